"""Pure-PyTorch reference backend: the ground truth every other backend is tested against.

Simple over fast; works in float64 and on any device. Each function here is a *backend
primitive* with the signature every backend implements (see ``ops/_backend.py``).

Random numbers: ``philox_uniform`` is Philox4x32-10 keyed by the 64-bit ``seed`` with the 64-bit
counter ``offset + e`` in the first two counter words, converted to float32 exactly the way
Triton's ``tl.rand`` does, so a mask drawn here is bit-identical to one drawn in a kernel.
"""

from __future__ import annotations

import torch

from ..modes import GATE_KINDS, GATE_MODE0, GATE_U_EPS, MODES

_SAMPLED = ("arm_pos", "arm_neg", "bernoulli", "concrete", "concrete_st", "hard_concrete")

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
# Triton's uint_to_uniform_float scale: the largest float32 s with (2^31 - 1) * s < 1.
_UNIFORM_SCALE = 4.6566127342e-10


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit words of the 64-bit product a * b, b holding uint32 values in int64.

    int64 cannot hold the full product, so b is split in 16-bit halves (each partial < 2^48).
    """
    p_lo = a * (b & 0xFFFF)
    p_hi = a * (b >> 16)
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & _M32
    return hi, lo


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = 10):
    """Philox4x32 on int64 tensors holding uint32 words; returns the four output words."""
    for _ in range(rounds):
        hi_b, lo_b = _mulhilo(_ROUND_B, c2)
        hi_a, lo_a = _mulhilo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + _KEY_A) & _M32
        k1 = (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


def philox_uniform(seed: int, counters: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in [0, 1) for int64 ``counters``; equals ``tl.rand(seed, counters)``."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    counters = counters.to(torch.int64)
    c0 = counters & _M32
    c1 = (counters >> 32) & _M32
    zero = torch.zeros_like(c0)
    x, _, _, _ = philox4x32(c0, c1, zero, zero, seed & _M32, seed >> 32)
    # Reinterpret as int32, fold negatives with bitwise not, scale in float32 (as tl.rand).
    x = torch.where(x >= 2**31, x - 2**32, x)
    x = torch.where(x < 0, -x - 1, x)
    return x.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def philox_uniform4(seed: int, counters: torch.Tensor) -> torch.Tensor:
    """float32 [..., 4]: the uniforms of all four output words of each counter's Philox call,
    word w at [..., w]; equals ``tl.rand4x(seed, counters)`` stacked (word 0 is
    ``philox_uniform``)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    counters = counters.to(torch.int64)
    c0 = counters & _M32
    c1 = (counters >> 32) & _M32
    zero = torch.zeros_like(c0)
    words = torch.stack(philox4x32(c0, c1, zero, zero, seed & _M32, seed >> 32), -1)
    words = torch.where(words >= 2**31, words - 2**32, words)
    words = torch.where(words < 0, -words - 1, words)
    return words.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def edge_uniforms(seed: int, offset: int, num_edges: int, device=None) -> torch.Tensor:
    """[E] float32: the uniform of edge e is philox_uniform(seed, offset + e)."""
    counters = torch.arange(num_edges, dtype=torch.int64, device=device) + int(offset)
    return philox_uniform(seed, counters)


def mode_needs_uniform(mode: int) -> bool:
    """Whether mode id ``mode`` draws a uniform per edge (the others are deterministic in phi)."""
    return MODES[mode] in _SAMPLED


def mask_and_derivative(
    mode: int, logits: torch.Tensor | None, u: torch.Tensor, gate=None, need_grad: bool = True
):
    """(z, dz/dphi or None) for mode id ``mode``, logits phi [E] and uniforms u [E].

    In logits' dtype. ``gate`` = (temperature, gamma, zeta), needed by the gate modes (the kinds of
    ops.gates, mode GATE_MODE0 + kind, through ``gate_from_uniforms``). The derivative is 0
    for the modes outside DIFFERENTIABLE_MODES (binary samples; ``hard``, SGCN's inference mask).
    """
    name = MODES[mode]
    if mode >= GATE_MODE0:
        return gate_from_uniforms(mode - GATE_MODE0, logits, u, *gate, need_grad=need_grad)
    if name == "ones":
        z = torch.ones_like(u)
    else:
        p = torch.sigmoid(logits)
        if name == "arm_pos":
            z = (u.to(p.dtype) > torch.sigmoid(-logits)).to(p.dtype)
        elif name in ("arm_neg", "bernoulli"):
            z = (u.to(p.dtype) < p).to(p.dtype)
        elif name == "expect":
            return p, (p * (1 - p) if need_grad else None)
        else:  # hard
            z = torch.where(p > 0.5, p, torch.zeros_like(p))
    return z, (torch.zeros_like(z) if need_grad else None)


def mask_from_uniforms(
    mode: int, logits: torch.Tensor | None, u: torch.Tensor, gate=None
) -> torch.Tensor:
    """z for one mode given logits phi [E] and uniforms u [E] (result in logits' dtype)."""
    return mask_and_derivative(mode, logits, u, gate, need_grad=False)[0]


# --------------------------------------------------------------------------- backend primitives
def edge_weights(
    logits, edge_weight, modes, seed, offset, num_edges, dtype, device, gate=None, need_grad=False
):
    """w [M, E] = z_m(phi, u) * omega for each mode id in ``modes`` (uniforms shared).

    ``gate``: (temperature, gamma, zeta), needed by the gate modes. With ``need_grad`` the pair
    (w, dw/dphi [M, E]), dw/dphi = omega * dz_m/dphi (0 for the non-differentiable modes).
    """
    # Only the sampling modes need uniforms; `ones`/`expect`/`hard`/`hard_concrete_mean` skip
    # the Philox pass.
    sampled = any(mode_needs_uniform(m) for m in modes)
    u = (
        edge_uniforms(seed, offset, num_edges, device)
        if sampled
        else torch.zeros(num_edges, device=device)
    )
    phi = None if logits is None else logits.to(dtype)
    rows, grads = [], []
    for mode in modes:
        z, dz = mask_and_derivative(mode, phi, u, gate, need_grad)
        rows.append(z.to(dtype) if edge_weight is None else z.to(dtype) * edge_weight.to(dtype))
        if need_grad:
            grads.append(
                dz.to(dtype) if edge_weight is None else dz.to(dtype) * edge_weight.to(dtype)
            )
    return (torch.stack(rows), torch.stack(grads)) if need_grad else torch.stack(rows)


def degree_rsqrt(graph, w, self_loop):
    """(r_u [M, U], r_i [M, I]): d^-1/2 of the weighted degrees (+1 with self-loops), 0 where d = 0."""
    users = graph.edge_users()
    m = w.shape[0]
    d_u = torch.zeros(m, graph.num_users, dtype=w.dtype, device=w.device).index_add_(1, users, w)
    d_i = torch.zeros(m, graph.num_items, dtype=w.dtype, device=w.device).index_add_(
        1, graph.col_item, w
    )
    if self_loop:
        d_u += 1
        d_i += 1
    r_u = torch.where(
        d_u > 0, d_u.clamp_min(torch.finfo(w.dtype).tiny).rsqrt(), torch.zeros_like(d_u)
    )
    r_i = torch.where(
        d_i > 0, d_i.clamp_min(torch.finfo(w.dtype).tiny).rsqrt(), torch.zeros_like(d_i)
    )
    return r_u, r_i


def spmm(rowptr, col, eid, w, r_row, r_col, x, x_self):
    """y [M, R, d] with y[m, r] = sum_j w[m, eid_j] r_row[m, r] r_col[m, col_j] x[col_j] (+ self term).

    ``eid`` maps CSR positions to edge ids (None: identity). ``r_row``/``r_col`` None means no
    renormalisation (factor 1). ``x_self`` [R, d] adds ``r_row^2 * x_self`` (or ``x_self``).
    """
    num_rows = rowptr.shape[0] - 1
    rows = torch.repeat_interleave(
        torch.arange(num_rows, device=x.device), rowptr.diff(), output_size=col.shape[0]
    )
    coef = w if eid is None else w[:, eid]
    if r_row is not None:
        coef = coef * r_row[:, rows] * r_col[:, col]
    msg = coef.unsqueeze(-1) * x[col].unsqueeze(0)
    y = torch.zeros(w.shape[0], num_rows, x.shape[1], dtype=x.dtype, device=x.device)
    y.index_add_(1, rows, msg)
    if x_self is not None:
        y += x_self.unsqueeze(0) if r_row is None else (r_row * r_row).unsqueeze(-1) * x_self
    return y


def edge_grad(graph, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop):
    """dL/dw [E] for one propagation (w [E], r_u [U], r_i [I]; r None = no renormalisation).

    G_e = <gy_u[u], x_i[i]> + <gy_i[i], x_u[u]>; with renormalisation
    dL/dw_e = r_u r_i G_e - 1/2 r_u^2 s_u - 1/2 r_i^2 t_i, s_u = sum_{e in u} G_e A_e
    (+ 2 r_u^2 <gy_u, x_u> with self-loops), t_i likewise.
    """
    users, items = graph.edge_users(), graph.col_item
    g = (gy_u[users] * x_i[items]).sum(-1) + (gy_i[items] * x_u[users]).sum(-1)
    if r_u is None:
        return g
    a_hat = r_u[users] * w * r_i[items]
    s_u = torch.zeros_like(r_u).index_add_(0, users, g * a_hat)
    t_i = torch.zeros_like(r_i).index_add_(0, items, g * a_hat)
    if self_loop:
        s_u += 2 * r_u * r_u * (gy_u * x_u).sum(-1)
        t_i += 2 * r_i * r_i * (gy_i * x_i).sum(-1)
    return (
        r_u[users] * r_i[items] * g
        - 0.5 * (r_u * r_u * s_u)[users]
        - 0.5 * (r_i * r_i * t_i)[items]
    )


# --------------------------------------------------------------------------- relaxed gates
def gate_from_uniforms(
    kind: int,
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature: float,
    gamma: float,
    zeta: float,
    need_grad: bool = True,
):
    """(z, dz/dphi or None) of gate ``kind`` (a GATE_ID) for logits phi and uniforms u (same shape).

    Computed in logits' dtype; u (float32) is cast to it.
    """
    name = GATE_KINDS[kind]
    dtype = logits.dtype
    if name == "hard_concrete_mean":
        p = torch.sigmoid(logits)
        stretched = p * (zeta - gamma) + gamma
        z = stretched.clamp(0.0, 1.0)
        inside = (stretched > 0) & (stretched < 1)
        dz = (
            torch.where(inside, (zeta - gamma) * p * (1 - p), torch.zeros_like(p))
            if need_grad
            else None
        )
        return z, dz
    uc = u.to(dtype).clamp(GATE_U_EPS, 1.0 - GATE_U_EPS)
    noise = torch.log(uc) - torch.log1p(-uc)
    s = torch.sigmoid((logits + noise) / temperature)
    ds = s * (1 - s) / temperature if need_grad else None
    if name == "concrete":
        return s, ds
    if name == "concrete_st":
        # The hard sample 1[phi + noise > 0] is 1[u > sigmoid(-phi)]: arm_pos's own comparison, so
        # it is an exact Bernoulli(sigmoid(phi)) draw, identical to the arm_pos mask of that u.
        return (u.to(dtype) > torch.sigmoid(-logits)).to(dtype), ds
    stretched = s * (zeta - gamma) + gamma  # hard_concrete
    z = stretched.clamp(0.0, 1.0)
    if need_grad:
        ds = torch.where(
            (stretched > 0) & (stretched < 1), (zeta - gamma) * ds, torch.zeros_like(ds)
        )
    return z, ds


def gate(logits, kind, seed, offset, temperature, gamma, zeta, need_grad):
    """Backend primitive of ``ops.gate``: (z, dz/dphi | None) with u = philox(seed, offset + n)."""
    counters = torch.arange(logits.numel(), dtype=torch.int64, device=logits.device) + int(offset)
    u = philox_uniform(seed, counters).reshape(logits.shape)
    return gate_from_uniforms(kind, logits, u, temperature, gamma, zeta, need_grad)
