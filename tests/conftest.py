"""Shared test fixtures.

Without a GPU, the Triton kernels are tested on CPU tensors under the Triton interpreter, which
must be switched on before any kernel module is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgcn_denoise  # noqa: E402
from fastgcn_denoise import BipartiteGraph  # noqa: E402
from fastgcn_denoise.ops import BACKENDS, availability  # noqa: E402

if os.environ.get("FASTGCN_REQUIRE_INSTALLED") == "1":
    # `make test` checks the installed package: importing the source tree would hide packaging bugs.
    _src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _pkg = os.path.join(_src, "fastgcn_denoise") + os.sep
    assert not os.path.abspath(fastgcn_denoise.__file__).startswith(_pkg), (
        f"tests import fastgcn_denoise from the source tree ({fastgcn_denoise.__file__}), "
        "not the installed package"
    )

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def backend_params(implemented=BACKENDS):
    """One pytest param per backend that implements the op (``implemented``: names, default all);
    those that cannot run here are skipped with the reason ``availability`` gives. A backend
    without a kernel for the op gets no param: ``check_refused`` tests that forcing it fails."""
    avail = availability(DEVICE)
    return [
        pytest.param(
            name, marks=pytest.mark.skipif(avail[name] is not None, reason=f"{name}: {avail[name]}")
        )
        for name in BACKENDS
        if name in implemented
    ]


def check_gradients(fn, inputs, backend: str, reference: str = "reference"):
    """``torch.autograd.gradcheck`` of ``fn(backend, *inputs)`` (float64 leaves). For Triton under
    the interpreter, where gradcheck's hundreds of probes are a launch each (30 s a case), the
    vector-Jacobian products against seeded random cotangents equal those of ``reference``
    instead: the caller's parametrisation gradchecks that backend on the same inputs."""
    if backend != "triton" or os.environ.get("TRITON_INTERPRET") != "1":
        assert torch.autograd.gradcheck(lambda *x: fn(backend, *x), tuple(inputs))
        return

    def differentiable(out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o for o in outs if o is not None and o.requires_grad]

    got, want = differentiable(fn(backend, *inputs)), differentiable(fn(reference, *inputs))
    assert len(got) == len(want) > 0
    gen = torch.Generator().manual_seed(0)
    cotangents = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device) for o in want]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    grads = torch.autograd.grad(got, inputs, cotangents, allow_unused=True)
    expected = torch.autograd.grad(want, inputs, cotangents, allow_unused=True)
    for a, b in zip(grads, expected):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def check_refused(call, backend: str, op: str):
    """``call(backend)`` must raise BackendUnavailable with a reason: that the op has no kernel
    for ``backend`` where the backend runs here, else why the backend cannot run here."""
    from fastgcn_denoise.ops import BackendUnavailable

    why = availability(DEVICE)[backend]
    expected = f"{op} has no {backend!r} kernel" if why is None else why
    with pytest.raises(BackendUnavailable) as exc:
        call(backend)
    assert expected in str(exc.value), (str(exc.value), expected)


def random_graph(num_users, num_items, density, seed=0, isolated=True) -> BipartiteGraph:
    """A random graph; with ``isolated`` the last user and last item have no edges (empty rows)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((num_users, num_items)) < density
    if isolated and num_users > 1 and num_items > 1:
        mask[-1, :] = False
        mask[:, -1] = False
    if not mask.any():
        mask[0, 0] = True
    users, items = np.nonzero(mask)
    return BipartiteGraph(users, items, num_users, num_items).to(DEVICE)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 60-user built-in data set saved as .npz (a Path), without a generator-drawn validation
    split (the trainer splits one off train: --valid-fraction); for the run-level tests."""
    from fastgcn_denoise.data import make_synthetic, save_npz

    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(
        make_synthetic(
            num_users=60, num_items=45, dim=4, avg_degree=8, seed=1, clean_validation=0.0
        ),
        path,
    )
    return path
