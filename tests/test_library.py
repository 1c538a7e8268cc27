"""The ops as torch.library custom ops: opcheck on every registered op and backend present, and a
LightGCN / S-LightGCN-style step compiled by torch.compile with no graph break."""

import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.models import Batch, LightGCN
from fastgcn_denoise.modes import MODE_ID
from fastgcn_denoise.ops import _library as library

BACKEND = backend_params()
GRAPH = random_graph(6, 5, 0.5, seed=1)
E = GRAPH.num_edges
ALL_UTILS = (
    "test_schema",
    "test_autograd_registration",
    "test_faketensor",
    "test_aot_dispatch_dynamic",
)
INTERPRETED_UTILS = ALL_UTILS[:3]
EMPTY = BipartiteGraph.from_csr([0] * 7, [], 2).to(DEVICE)  # 6 users, 2 items, no edges


def rand(*shape, grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_(grad)


def samples(backend):
    """{op name: [args, ...]}: small inputs for every registered op, with gradients wanted."""
    g = library.graph_args(GRAPH)
    xu, xi = rand(6, 3, grad=True, seed=1), rand(5, 3, grad=True, seed=2)
    phi, omega = rand(E, grad=True, seed=3), rand(E, seed=4).abs().requires_grad_()
    held = torch.tensor([2, 0, 2], device=DEVICE)
    gate = [0.5, -0.2, 1.2]

    def w_for(modes, holdout=None):
        return [
            *g,
            xu,
            xi,
            phi,
            omega,
            holdout,
            [MODE_ID[m] for m in modes],
            3,
            7,
            gate,
            False,
            True,
            True,  # keep dw/dphi for backward
            backend,
        ]

    # bfloat16 embeddings (masks, logits and degrees in float32) on one gate mode.
    x16 = [t.detach().to(torch.bfloat16).requires_grad_() for t in (xu, xi)]
    phi32 = phi.detach().float().requires_grad_()
    u, s, v = ops.truncated_svd(GRAPH, 2, omega.detach(), dtype=torch.float64)
    return {
        # Every mode (two per call where the op allows): expect and the gates get a logit
        # gradient, the binary ones none; holdout; ones on the degree fast path and off it.
        "masked_spmm": [
            w_for(["expect", "hard"], held),
            w_for(["arm_pos", "arm_neg"]),
            w_for(["concrete", "concrete_st"]),
            w_for(["bernoulli"], held),
            w_for(["hard_concrete", "hard_concrete_mean"], held),
            [
                *g,
                xu,
                xi,
                None,
                None,
                None,
                [MODE_ID["ones"]],
                0,
                0,
                gate,
                True,
                False,
                False,
                backend,
            ],
            [
                *g,
                xu,
                xi,
                None,
                None,
                held,
                [MODE_ID["ones"]],
                0,
                0,
                gate,
                False,
                True,
                False,
                backend,
            ],
            [
                *g,
                *x16,
                phi32,
                None,
                None,
                [MODE_ID["concrete"]],
                1,
                0,
                gate,
                False,
                True,
                True,
                backend,
            ],
            # No edges: the logits' gradient is a real [0] tensor.
            [
                *library.graph_args(EMPTY),
                xu,
                rand(2, 3, grad=True, seed=27),
                rand(0, grad=True),
                None,
                None,
                [MODE_ID["concrete"]],
                1,
                0,
                gate,
                True,
                True,
                True,
                backend,
            ],
        ],
        "masked_spmm_backward": [
            [
                *g,
                omega.detach()[None],
                rand(1, 6, seed=5),
                rand(1, 5, seed=6),
                rand(0),  # no dw/dphi kept: regenerated
                xu.detach(),
                xi.detach(),
                phi.detach(),
                None,
                None,
                [rand(6, 3, seed=7), None],
                [MODE_ID["expect"]],
                0,
                0,
                gate,
                False,
                True,
                [True, True, True, True],
                backend,
            ],
            [
                *g,
                omega.detach()[None],
                rand(1, 6, seed=5),
                rand(1, 5, seed=6),
                rand(1, E, seed=28),  # dw/dphi kept by the forward
                xu.detach(),
                xi.detach(),
                phi.detach(),
                omega.detach(),
                held,
                [rand(6, 3, seed=7), rand(5, 3, seed=26)],
                [MODE_ID["hard_concrete"]],
                2,
                1,
                gate,
                True,
                True,
                [True, False, True, True],
                backend,
            ],
        ],
        "sample_mask": [
            [phi.detach(), MODE_ID["bernoulli"], 1, 2, gate, backend],
            [
                phi.detach().reshape(1, E).expand(2, E).contiguous(),
                MODE_ID["hard_concrete"],
                1,
                2,
                gate,
                backend,
            ],
        ],
        "sddmm": [[*g, xu, xi, backend]],
        "sddmm_backward": [[*g, xu.detach(), xi.detach(), rand(E, seed=8), True, True, backend]],
        "gate": [[phi, 2, 5, 0, 2 / 3, -0.1, 1.1, True, backend]],
        "arm_grad": [[phi.detach(), 5, 0, torch.tensor(0.25, dtype=torch.float64), True, backend]],
        "weighted_spmm": [
            [g[0], g[1], None, g[2], g[3], g[4], omega, xi, "weight", backend],
            [g[2], g[3], g[4], g[0], g[1], None, omega, xu, "weight", backend],
        ],
        "weighted_spmm_backward": [
            [
                g[0],
                g[1],
                None,
                g[2],
                g[3],
                g[4],
                omega.detach(),
                xi.detach(),
                rand(6, 3, seed=9),
                True,
                True,
                backend,
            ]
        ],
        "truncated_svd": [[*g, 2, omega.detach(), 4, 1e-3, None, 2, torch.float64, backend]],
        # power_iteration's backward runs autograd eagerly (not traceable): opcheck the exact one.
        "nuclear_norm": [[*g, omega, 2, None, 4, 1e-3, 2, "exact", 3, backend]],
        "nuclear_norm_backward": [
            [g[0], g[1], u, v, torch.tensor(1.5, dtype=torch.float64), backend]
        ],
        "cosine_attention": [
            [
                *g,
                1.0,
                xu,
                xi,
                rand(6, 2, grad=True, seed=15),
                rand(5, 2, grad=True, seed=16),
                backend,
            ],
            [*g, 2.0, xu, xi, None, rand(5, 2, grad=True, seed=17), backend],
        ],
        "cosine_attention_backward": [
            [
                *g,
                1.0,
                xu.detach(),
                xi.detach(),
                rand(6, 2, seed=18),
                rand(5, 2, seed=19),
                rand(E, seed=20).abs(),
                rand(E, seed=21).abs(),
                [rand(6, 2, seed=22), rand(5, 2, seed=23), rand(E, seed=24), rand(E, seed=25)],
                [True, True, True, True],
                backend,
            ]
        ],
    }


def test_every_registered_op_has_samples():
    assert set(samples(None)) == set(library.REGISTERED)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("name", sorted(library.REGISTERED))
def test_opcheck(name, backend):
    if backend == "cuda" and name in (
        "sddmm",
        "sddmm_backward",
        "gate",
        "arm_grad",
        "nuclear_norm_backward",
    ):
        pytest.skip(f"{name} has no CUDA C++ kernel (triton covers GPUs)")
    # Under the Triton interpreter (CPU) the AOT-dispatch check, the slowest part (trace, compile,
    # rerun), runs on the other backends only: what it tests, the fake kernel and the autograd
    # formula, is the same code for every backend. Schema, fake-tensor and autograd-registration
    # checks run on every backend; on a GPU all four do.
    utils = INTERPRETED_UTILS if backend == "triton" and DEVICE.type == "cpu" else ALL_UTILS
    for args in samples(backend)[name]:
        torch.library.opcheck(library.REGISTERED[name], tuple(args), test_utils=utils)


def lightgcn_loss(model, graph, batch):
    return model.loss(graph, batch)["loss"]


def test_lightgcn_compiles_without_graph_breaks():
    graph = random_graph(9, 11, 0.4, seed=2)
    torch.manual_seed(0)
    model = LightGCN(9, 11, dim=4, num_layers=2).to(DEVICE).double()
    batch = Batch(
        torch.tensor([0, 3, 5], device=DEVICE),
        torch.tensor([1, 2, 4], device=DEVICE),
        torch.tensor([6, 0, 9], device=DEVICE),
    )
    explained = torch._dynamo.explain(lambda: model.loss(graph, batch)["loss"])()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    eager = lightgcn_loss(model, graph, batch)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    # The forward is one graph; AOT autograd derives the backward graph from the registered
    # backward ops (fullgraph=True fails on any break).
    got = torch.compile(lightgcn_loss, backend="aot_eager", fullgraph=True)(model, graph, batch)
    got.backward()
    torch.testing.assert_close(got, eager)
    for p, want in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, want)


def test_masked_ops_compile_without_graph_breaks():
    """The SGCN pieces: the dual ARM pass, the ARM gradient, a gate and the nuclear norm; a
    relaxed-gate propagation with a target-edge holdout."""
    graph = random_graph(7, 6, 0.5, seed=3)
    xu, xi = rand(7, 3, grad=True, seed=10), rand(6, 3, grad=True, seed=11)
    phi = rand(graph.num_edges, grad=True, seed=12)
    state = ops.NuclearNormState()

    def step(xu, xi, phi):
        (pu, pi), (nu, ni) = ops.masked_spmm_dual(graph, xu, xi, phi, seed=4)
        f_pos, f_neg = pu.square().sum() + pi.sum(), nu.square().sum() + ni.sum()
        g = ops.arm_grad(phi, 4, 0, f_pos, f_neg, "disarm")
        z = ops.gate(phi, "hard_concrete", seed=1)
        nn = ops.nuclear_norm(graph, torch.sigmoid(phi), 2, state)
        hu, hi = ops.masked_spmm(
            graph,
            xu,
            xi,
            phi,
            "hard_concrete",
            seed=5,
            temperature=0.5,
            holdout=torch.tensor([1, 3], device=DEVICE),
        )
        return f_pos + (g * phi).sum() + z.sum() + nn + hu.square().sum() + hi.sum()

    explained = torch._dynamo.explain(step)(xu, xi, phi)
    assert explained.graph_break_count == 0, explained.break_reasons
    eager = step(xu, xi, phi)
    eager.backward()
    want = [t.grad.clone() for t in (xu, xi, phi)]
    for t in (xu, xi, phi):
        t.grad = None
    torch._dynamo.reset()
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(xu, xi, phi)
    got.backward()
    torch.testing.assert_close(got, eager)
    for t, w in zip((xu, xi, phi), want):
        torch.testing.assert_close(t.grad, w)
    assert state.v is not None and state.v.shape == (6, 2)


def test_warm_started_nuclear_norm_backward_twice():
    """Each call's backward stands alone: the state's warm start does not chain the graphs."""
    state = ops.NuclearNormState()
    for seed in (13, 14):
        w = rand(E, seed=seed).abs().requires_grad_()
        ops.nuclear_norm(GRAPH, w, 2, state).backward()
        assert w.grad is not None and not state.v.requires_grad
