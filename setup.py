"""Build script: the compiled extension `fastgcn_denoise._C` and the Triton kernels package.

Environment switches:
  FASTGCN_NO_EXT=1   pure-Python install (no compiled extension; `reference`/`triton` backends only)
  FORCE_CUDA=1       build the CUDA kernels even when no GPU is visible (needs nvcc + CUDA torch;
                     an error without them, never a silent CPU build)
  TORCH_CUDA_ARCH_LIST  respected by torch.utils.cpp_extension
  FASTGCN_CPU_ARCH   -march for the CPU kernels (default "native": the SpMM and Philox loops
                     vectorise with the host's AVX2/AVX-512; set "x86-64" for a portable build)
"""

import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _has_libmvec() -> bool:
    """glibc's vector math library (x86-64 Linux): the CPU gate kernels call it."""
    import ctypes.util
    import platform

    return (
        platform.system() == "Linux"
        and platform.machine() in ("x86_64", "AMD64")
        and ctypes.util.find_library("mvec") is not None
    )


def _ext_modules():
    if os.environ.get("FASTGCN_NO_EXT", "0") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # -fno-math-errno -fno-trapping-math change no value (no errno is read, no FP trap is enabled)
    # and let GCC vectorise the gates' exp/log through libmvec (csrc/cpu/vector_math.h).
    extra_cxx = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    extra_link = ["-fopenmp"] + (["-lmvec"] if _has_libmvec() else [])
    arch = os.environ.get("FASTGCN_CPU_ARCH", "native")
    if arch:
        extra_cxx.append(f"-march={arch}")
    define_macros = []
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    want_cuda = force_cuda or torch.cuda.is_available()
    has_cuda_torch = torch.version.cuda is not None
    if force_cuda and not (CUDA_HOME is not None and has_cuda_torch):
        # A silent CPU build here would surface only as a missing backend on the GPU machine.
        missing = " and ".join(
            m
            for m, bad in (
                ("no CUDA toolkit (CUDA_HOME unset, no nvcc found)", CUDA_HOME is None),
                (f"torch {torch.__version__} is not a CUDA build", not has_cuda_torch),
            )
            if bad
        )
        raise RuntimeError(
            f"setup.py: FORCE_CUDA=1 cannot build the CUDA kernels: {missing}; "
            "unset FORCE_CUDA for a CPU build"
        )
    if want_cuda and CUDA_HOME is not None and has_cuda_torch:
        define_macros.append(("WITH_CUDA", None))
        ext = CUDAExtension(
            "fastgcn_denoise._C",
            sources + sorted(glob.glob("csrc/cuda/*.cu")),
            include_dirs=[os.path.join(HERE, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": extra_cxx, "nvcc": ["-O3"]},
            extra_link_args=extra_link,
        )
    else:
        ext = CppExtension(
            "fastgcn_denoise._C",
            sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": extra_cxx},
            extra_link_args=extra_link,
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _ext_modules()

setup(
    # Every package under fastgcn_denoise/ (a new subpackage needs no edit here), and the Triton
    # kernels, which live in kernels/ beside it and install as fastgcn_denoise.kernels (in the
    # source tree fastgcn_denoise/kernels is a link to kernels/, so tools that import the source
    # tree, lint-imports among them, see the installed layout).
    packages=sorted(
        {
            p
            for p in find_packages(include=["fastgcn_denoise", "fastgcn_denoise.*"])
            if not p.startswith("fastgcn_denoise.kernels")
        }
        | {"fastgcn_denoise.kernels"}
    ),
    package_dir={"fastgcn_denoise.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
