"""fastgcn_denoise: fused kernels and models for denoising graph-convolutional recommenders."""

from ._runtime import keep_heap

__version__ = "0.1.0"
__all__ = ["BipartiteGraph", "__version__", "keep_heap"]


def __getattr__(name):
    # Imported on first use, so that importing the package (e.g. for the command line, which sets
    # OpenMP's environment first: see _runtime) does not load torch yet.
    if name == "BipartiteGraph":
        from .graph import BipartiteGraph

        return BipartiteGraph
    raise AttributeError(f"module 'fastgcn_denoise' has no attribute {name!r}")
