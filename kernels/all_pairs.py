"""Triton backend of ``ops.all_pairs_interaction`` (L0-SIGN's gated all-pairs pass).

Semantics: ``fastgcn_denoise/ops/all_pairs.py``. One program per graph. The program takes the
graph's nodes one destination t at a time and forms the pairs {t, j} against chunks of
``BLOCK_J`` sources j in registers: the products u_t * u_j, both MLPs (hidden tiles of the
padded widths), the gate from ``kernels.gates.gate_eval`` with the uniform ``tl.rand(seed,
offset + pair_ptr[g] + q)`` of the unordered pair (q = its upper-triangle index, the same draw
from whichever end it is formed), and the masked sum into t. A pair is formed from both ends (k^2
evaluations instead of k(k+1)/2), so each node's sum, count and gradient are produced by one
loop of one program: no atomics, no scratch memory, deterministic. The per-graph terms (L0, L2,
kept) count each pair once, at its smaller end. h is evaluated for every pair of a chunk (the
lanes of dropped pairs are masked out of every sum): on a GPU skipping them would not save the
chunk's work.

Backward recomputes the pairs (uniforms regenerated) with the kept counts saved by forward: at
destination t it forms the full gradient of every pair {t, j} (both of its deliveries), which is
all that u_t and e_t receive, and adds the weight gradients of the pairs it owns (j >= t) to the
program's registers; each program writes one row of per-graph weight partials, summed by torch.
The embedding rows of a chunk are gathered from the tables (L1/L2-resident on a GPU).

Every vector load is masked (the interpreter has no bounds checks). Accumulation in float64 for
float64 tensors, float32 otherwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.gates import gate_eval
from fastgcn_denoise.kernels.masked_spmm import _acc_dtype, _check_device, _i64, _sigmoid

_BLOCK_J = 16  # sources per step: a [16, d, H] product tile
# The backward holds the forward's tiles, their gradients and the weight-gradient accumulators:
# with 4 warps it reaches 255 registers and spills at the L0-SIGN defaults (d = 8, H = 32; sm_90
# ptxas); 8 warps spread the same tiles over twice the threads.
_BACKWARD_WARPS = 8


@triton.jit
def _load_mlps(
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    gw1_ptr,
    gb1_ptr,
    gw2_ptr,
    gb2_ptr,
    d,
    e,
    hid,
    ghid,
    HAS_GATE: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_G: tl.constexpr,
):
    """The MLP weights as zero-padded tiles: W1^T [D, H], b1 [H], W2^T [H, D], b2 [D], W1g^T
    [E, G], b1g [G], w2g [G], b2g (scalar); the gate tiles are zeros without a gate."""
    od = tl.arange(0, BLOCK_D)
    oh = tl.arange(0, BLOCK_H)
    md, mh = od < d, oh < hid
    w1t = tl.load(
        w1_ptr + oh[None, :] * d + od[:, None], mask=md[:, None] & mh[None, :], other=0.0
    ).to(COMPUTE)
    b1 = tl.load(b1_ptr + oh, mask=mh, other=0.0).to(COMPUTE)
    w2t = tl.load(
        w2_ptr + od[None, :] * hid + oh[:, None], mask=mh[:, None] & md[None, :], other=0.0
    ).to(COMPUTE)
    b2 = tl.load(b2_ptr + od, mask=md, other=0.0).to(COMPUTE)
    oe = tl.arange(0, BLOCK_E)
    og = tl.arange(0, BLOCK_G)
    me, mg = oe < e, og < ghid
    if HAS_GATE:
        gw1t = tl.load(
            gw1_ptr + og[None, :] * e + oe[:, None], mask=me[:, None] & mg[None, :], other=0.0
        ).to(COMPUTE)
        gb1 = tl.load(gb1_ptr + og, mask=mg, other=0.0).to(COMPUTE)
        gw2 = tl.load(gw2_ptr + og, mask=mg, other=0.0).to(COMPUTE)
        gb2 = tl.load(gb2_ptr).to(COMPUTE)
    else:
        gw1t = tl.zeros([BLOCK_E, BLOCK_G], COMPUTE)
        gb1 = tl.zeros([BLOCK_G], COMPUTE)
        gw2 = tl.zeros([BLOCK_G], COMPUTE)
        gb2 = tl.sum(gb1, axis=0)
    return w1t, b1, w2t, b2, gw1t, gb1, gw2, gb2


@triton.jit
def _pairs(
    emb_ptr,
    eemb_ptr,
    f_j,
    mj,
    u_t,
    e_t,
    oj,
    t,
    k,
    pbase,
    seed,
    offset,
    tau,
    gamma,
    zeta,
    shift,
    d,
    e,
    w1t,
    b1,
    w2t,
    b2,
    gw1t,
    gb1,
    gw2,
    gb2,
    KIND: tl.constexpr,
    HAS_GATE: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_G: tl.constexpr,
):
    """Pairs {t, j} for a chunk of sources j: (U [J, D], A, hpre [J, H], Z [J, D], E [J, E'],
    AE, epre [J, G], s [J], ds [J], pi [J]); rows outside the chunk (mj False) are zero."""
    od = tl.arange(0, BLOCK_D)
    md = od < d
    U = tl.load(
        emb_ptr + f_j[:, None] * d + od[None, :], mask=mj[:, None] & md[None, :], other=0.0
    ).to(COMPUTE)
    A = U * u_t[None, :]
    hpre = tl.sum(A[:, :, None] * w1t[None, :, :], axis=1) + b1[None, :]
    Z = tl.sum(tl.maximum(hpre, 0.0)[:, :, None] * w2t[None, :, :], axis=1) + b2[None, :]
    Z = tl.where(mj[:, None], Z, 0.0)
    oe = tl.arange(0, BLOCK_E)
    me = oe < e
    if HAS_GATE:
        E = tl.load(
            eemb_ptr + f_j[:, None] * e + oe[None, :], mask=mj[:, None] & me[None, :], other=0.0
        ).to(COMPUTE)
        AE = E * e_t[None, :]
        epre = tl.sum(AE[:, :, None] * gw1t[None, :, :], axis=1) + gb1[None, :]
        logit = tl.sum(tl.maximum(epre, 0.0) * gw2[None, :], axis=1) + gb2
        # The unordered pair's counter: both ends draw the same uniform.
        lo = tl.minimum(oj, t)
        hi = tl.maximum(oj, t)
        q = lo * k - (lo * (lo - 1)) // 2 + (hi - lo)
        u = tl.rand(seed, offset + pbase + q.to(tl.int64))
        s, ds = gate_eval(KIND, logit, u, tau, gamma, zeta)
        s = tl.where(mj, s, 0.0)
        ds = tl.where(mj, ds, 0.0)
        pi = tl.where(mj, _sigmoid(logit + shift), 0.0)
    else:
        E = tl.zeros([BLOCK_J, BLOCK_E], COMPUTE)
        AE = E
        epre = tl.zeros([BLOCK_J, BLOCK_G], COMPUTE)
        s = tl.where(mj, 1.0, 0.0).to(COMPUTE)
        ds = tl.zeros_like(s)
        pi = tl.zeros_like(s)
    return U, A, hpre, Z, E, AE, epre, s, ds, pi


@triton.jit(do_not_specialize=["seed", "offset"])
def _forward_kernel(
    ptr_ptr,
    nodes_ptr,
    pair_ptr_ptr,
    emb_ptr,
    eemb_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    gw1_ptr,
    gb1_ptr,
    gw2_ptr,
    gb2_ptr,
    pooled_ptr,
    l0_ptr,
    l2_ptr,
    kept_ptr,
    counts_ptr,
    seed,
    offset,
    tau,
    gamma,
    zeta,
    shift,
    d,
    e,
    hid,
    ghid,
    KIND: tl.constexpr,
    HAS_GATE: tl.constexpr,
    DIRECTED: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_G: tl.constexpr,
):
    g = tl.program_id(0).to(tl.int64)
    start = tl.load(ptr_ptr + g)
    k = tl.load(ptr_ptr + g + 1) - start
    pbase = tl.load(pair_ptr_ptr + g)
    w1t, b1, w2t, b2, gw1t, gb1, gw2, gb2 = _load_mlps(
        w1_ptr,
        b1_ptr,
        w2_ptr,
        b2_ptr,
        gw1_ptr,
        gb1_ptr,
        gw2_ptr,
        gb2_ptr,
        d,
        e,
        hid,
        ghid,
        HAS_GATE,
        COMPUTE,
        BLOCK_D,
        BLOCK_E,
        BLOCK_H,
        BLOCK_G,
    )
    od = tl.arange(0, BLOCK_D)
    md = od < d
    oe = tl.arange(0, BLOCK_E)
    me = oe < e
    pooled = tl.zeros([BLOCK_D], COMPUTE)
    zero_j = tl.zeros([BLOCK_J], COMPUTE)
    l0 = tl.sum(zero_j, axis=0)
    l2 = tl.sum(zero_j, axis=0)
    kept = tl.sum(zero_j, axis=0)
    for t in range(0, k):
        f_t = tl.load(nodes_ptr + start + t)
        u_t = tl.load(emb_ptr + f_t * d + od, mask=md, other=0.0).to(COMPUTE)
        e_t = tl.load(eemb_ptr + f_t * e + oe, mask=me, other=0.0).to(COMPUTE)
        acc = tl.zeros([BLOCK_D], COMPUTE)
        cnt = tl.sum(zero_j, axis=0)
        for j0 in range(0, k, BLOCK_J):
            oj = j0 + tl.arange(0, BLOCK_J)
            mj = oj < k
            f_j = tl.load(nodes_ptr + start + oj, mask=mj, other=0)
            U, A, hpre, Z, E, AE, epre, s, ds, pi = _pairs(
                emb_ptr,
                eemb_ptr,
                f_j,
                mj,
                u_t,
                e_t,
                oj,
                t,
                k,
                pbase,
                seed,
                offset,
                tau,
                gamma,
                zeta,
                shift,
                d,
                e,
                w1t,
                b1,
                w2t,
                b2,
                gw1t,
                gb1,
                gw2,
                gb2,
                KIND,
                HAS_GATE,
                COMPUTE,
                BLOCK_J,
                BLOCK_D,
                BLOCK_E,
                BLOCK_G,
            )
            keep = mj & (s > 0.0)
            if DIRECTED:  # pair {lo, hi} delivers to hi only: to t when j <= t
                recv = keep & (oj <= t)
            else:
                recv = keep
            acc += tl.sum(tl.where(recv, s, 0.0)[:, None] * Z, axis=0)
            cnt += tl.sum(recv.to(COMPUTE), axis=0)
            own = mj & (oj >= t)  # the pair's per-graph terms, once, at its smaller end
            l2 += tl.sum(tl.where(own & keep, tl.sum(Z * Z, axis=1), 0.0), axis=0)
            l0 += tl.sum(tl.where(own, pi, 0.0), axis=0)
            kept += tl.sum((own & keep).to(COMPUTE), axis=0)
        pooled += acc / tl.maximum(cnt, 1.0)
        tl.store(counts_ptr + start + t, cnt.to(tl.int32))
    pooled = pooled / tl.maximum(k, 1).to(COMPUTE)
    tl.store(pooled_ptr + g * d + od, pooled.to(pooled_ptr.dtype.element_ty), mask=md)
    tl.store(l0_ptr + g, l0.to(l0_ptr.dtype.element_ty))
    tl.store(l2_ptr + g, l2.to(l2_ptr.dtype.element_ty))
    tl.store(kept_ptr + g, kept.to(tl.int64))


@triton.jit(do_not_specialize=["seed", "offset"])
def _backward_kernel(
    ptr_ptr,
    nodes_ptr,
    pair_ptr_ptr,
    emb_ptr,
    eemb_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    gw1_ptr,
    gb1_ptr,
    gw2_ptr,
    gb2_ptr,
    counts_ptr,
    g_pooled_ptr,
    g_l0_ptr,
    g_l2_ptr,
    g_pos_ptr,
    g_epos_ptr,
    partial_ptr,
    num_params,
    seed,
    offset,
    tau,
    gamma,
    zeta,
    shift,
    d,
    e,
    hid,
    ghid,
    KIND: tl.constexpr,
    HAS_GATE: tl.constexpr,
    DIRECTED: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_G: tl.constexpr,
):
    g = tl.program_id(0).to(tl.int64)
    start = tl.load(ptr_ptr + g)
    k = tl.load(ptr_ptr + g + 1) - start
    pbase = tl.load(pair_ptr_ptr + g)
    w1t, b1, w2t, b2, gw1t, gb1, gw2, gb2 = _load_mlps(
        w1_ptr,
        b1_ptr,
        w2_ptr,
        b2_ptr,
        gw1_ptr,
        gb1_ptr,
        gw2_ptr,
        gb2_ptr,
        d,
        e,
        hid,
        ghid,
        HAS_GATE,
        COMPUTE,
        BLOCK_D,
        BLOCK_E,
        BLOCK_H,
        BLOCK_G,
    )
    od = tl.arange(0, BLOCK_D)
    md = od < d
    oe = tl.arange(0, BLOCK_E)
    me = oe < e
    oh = tl.arange(0, BLOCK_H)
    mh = oh < hid
    og = tl.arange(0, BLOCK_G)
    mg = og < ghid
    G = tl.load(g_pooled_ptr + g * d + od, mask=md, other=0.0).to(COMPUTE)
    gl2 = tl.load(g_l2_ptr + g).to(COMPUTE)
    if HAS_GATE:
        gl0 = tl.load(g_l0_ptr + g).to(COMPUTE)
    else:
        gl0 = 0.0
    inv_k = 1.0 / tl.maximum(k, 1).to(COMPUTE)
    d_w1t = tl.zeros([BLOCK_D, BLOCK_H], COMPUTE)
    d_b1 = tl.zeros([BLOCK_H], COMPUTE)
    d_w2t = tl.zeros([BLOCK_H, BLOCK_D], COMPUTE)
    d_b2 = tl.zeros([BLOCK_D], COMPUTE)
    d_gw1t = tl.zeros([BLOCK_E, BLOCK_G], COMPUTE)
    d_gb1 = tl.zeros([BLOCK_G], COMPUTE)
    d_gw2 = tl.zeros([BLOCK_G], COMPUTE)
    d_gb2 = tl.sum(tl.zeros([BLOCK_J], COMPUTE), axis=0)
    for t in range(0, k):
        f_t = tl.load(nodes_ptr + start + t)
        u_t = tl.load(emb_ptr + f_t * d + od, mask=md, other=0.0).to(COMPUTE)
        e_t = tl.load(eemb_ptr + f_t * e + oe, mask=me, other=0.0).to(COMPUTE)
        c_t = tl.load(counts_ptr + start + t).to(COMPUTE)
        inv_ct = tl.where(c_t > 0, 1.0 / tl.maximum(c_t, 1.0), 0.0)
        du = tl.zeros([BLOCK_D], COMPUTE)
        de = tl.zeros([BLOCK_E], COMPUTE)
        for j0 in range(0, k, BLOCK_J):
            oj = j0 + tl.arange(0, BLOCK_J)
            mj = oj < k
            f_j = tl.load(nodes_ptr + start + oj, mask=mj, other=0)
            U, A, hpre, Z, E, AE, epre, s, ds, pi = _pairs(
                emb_ptr,
                eemb_ptr,
                f_j,
                mj,
                u_t,
                e_t,
                oj,
                t,
                k,
                pbase,
                seed,
                offset,
                tau,
                gamma,
                zeta,
                shift,
                d,
                e,
                w1t,
                b1,
                w2t,
                b2,
                gw1t,
                gb1,
                gw2,
                gb2,
                KIND,
                HAS_GATE,
                COMPUTE,
                BLOCK_J,
                BLOCK_D,
                BLOCK_E,
                BLOCK_G,
            )
            c_j = tl.load(counts_ptr + start + oj, mask=mj, other=0).to(COMPUTE)
            inv_cj = tl.where(c_j > 0, 1.0 / tl.maximum(c_j, 1.0), 0.0)
            # d pooled / d message of pair {t, j}, summed over the nodes it is delivered to.
            if DIRECTED:
                w = tl.where(oj <= t, inv_ct, inv_cj)
            else:
                w = inv_ct + tl.where(oj != t, inv_cj, 0.0)
            keep = mj & (s > 0.0)
            w = tl.where(keep, w * inv_k, 0.0)
            # A dropped pair has no h (and ds = 0 for the op's kinds): its GZ and gl2 term are 0.
            GZ = (s * w)[:, None] * G[None, :] + tl.where(keep, 2.0 * gl2, 0.0)[:, None] * Z
            dR = tl.sum(GZ[:, None, :] * w2t[None, :, :], axis=2)
            dH = tl.where(hpre > 0.0, dR, 0.0)
            dA = tl.sum(dH[:, None, :] * w1t[None, :, :], axis=2)
            # u_t's share of a = u_t * u_j; a self pair holds u_t twice.
            twice = tl.where(oj == t, 2.0, 1.0)
            du += tl.sum(dA * U * twice[:, None], axis=0)
            own = mj & (oj >= t)
            GZo = tl.where(own[:, None], GZ, 0.0)
            dHo = tl.where(own[:, None], dH, 0.0)
            d_w2t += tl.sum(tl.maximum(hpre, 0.0)[:, :, None] * GZo[:, None, :], axis=0)
            d_b2 += tl.sum(GZo, axis=0)
            d_w1t += tl.sum(A[:, :, None] * dHo[:, None, :], axis=0)
            d_b1 += tl.sum(dHo, axis=0)
            if HAS_GATE:
                gl = ds * w * tl.sum(G[None, :] * Z, axis=1) + gl0 * pi * (1.0 - pi)
                gl = tl.where(mj, gl, 0.0)
                dE = tl.where(epre > 0.0, gl[:, None] * gw2[None, :], 0.0)
                dAE = tl.sum(dE[:, None, :] * gw1t[None, :, :], axis=2)
                de += tl.sum(dAE * E * twice[:, None], axis=0)
                glo = tl.where(own, gl, 0.0)
                dEo = tl.where(own[:, None], dE, 0.0)
                d_gw2 += tl.sum(glo[:, None] * tl.maximum(epre, 0.0), axis=0)
                d_gb2 += tl.sum(glo, axis=0)
                d_gw1t += tl.sum(AE[:, :, None] * dEo[:, None, :], axis=0)
                d_gb1 += tl.sum(dEo, axis=0)
        tl.store(g_pos_ptr + (start + t) * d + od, du.to(g_pos_ptr.dtype.element_ty), mask=md)
        if HAS_GATE:
            tl.store(g_epos_ptr + (start + t) * e + oe, de.to(g_epos_ptr.dtype.element_ty), mask=me)
    # One row of weight partials per graph, in nn.Linear layouts, the op's order.
    row = partial_ptr + g * num_params
    tl.store(row + oh[None, :] * d + od[:, None], d_w1t, mask=md[:, None] & mh[None, :])
    o = hid * d
    tl.store(row + o + oh, d_b1, mask=mh)
    o += hid
    tl.store(row + o + od[None, :] * hid + oh[:, None], d_w2t, mask=mh[:, None] & md[None, :])
    o += hid * d
    tl.store(row + o + od, d_b2, mask=md)
    o += d
    if HAS_GATE:
        tl.store(row + o + og[None, :] * e + oe[:, None], d_gw1t, mask=me[:, None] & mg[None, :])
        o += ghid * e
        tl.store(row + o + og, d_gb1, mask=mg)
        o += ghid
        tl.store(row + o + og, d_gw2, mask=mg)
        o += ghid
        tl.store(row + o, d_gb2)


def _meta(tensors, kind):
    emb, eemb, w1 = tensors[0], tensors[1], tensors[2]
    d, e, hid, ghid = (
        emb.shape[1],
        eemb.shape[1],
        w1.shape[0],
        tensors[6].shape[0] if kind >= 0 else 0,
    )
    p2 = lambda n: triton.next_power_of_2(max(int(n), 1))  # noqa: E731
    return (d, e, hid, ghid), dict(
        KIND=max(int(kind), 0),
        HAS_GATE=kind >= 0,
        COMPUTE=_acc_dtype(emb.dtype),
        BLOCK_J=_BLOCK_J,
        BLOCK_D=p2(d),
        BLOCK_E=p2(e),
        BLOCK_H=p2(hid),
        BLOCK_G=p2(ghid),
    )


def _gate_ptrs(tensors):
    """The gate's four tensors (placeholders of any tensor when there is no gate)."""
    return [t if t.numel() else tensors[0] for t in (tensors[1], *tensors[6:])]


def forward(ptr, nodes, pair_ptr, tensors, kind, seed, offset, tau, gamma, zeta, shift, directed):
    """(pooled [B, d], l0 [B], l2 [B], kept [B] int64, counts [N] int32)."""
    emb = tensors[0]
    _check_device(ptr, nodes, pair_ptr, *tensors)
    num_graphs = ptr.shape[0] - 1
    (d, e, hid, ghid), meta = _meta(tensors, kind)
    pooled = torch.empty(num_graphs, d, dtype=emb.dtype, device=emb.device)
    l0 = torch.empty(num_graphs, dtype=emb.dtype, device=emb.device)
    l2 = torch.empty_like(l0)
    kept = torch.empty(num_graphs, dtype=torch.int64, device=emb.device)
    counts = torch.empty(nodes.shape[0], dtype=torch.int32, device=emb.device)
    if num_graphs:
        eemb, gw1, gb1, gw2, gb2 = _gate_ptrs(tensors)
        _forward_kernel[(num_graphs,)](
            ptr,
            nodes,
            pair_ptr,
            emb,
            eemb,
            *tensors[2:6],
            gw1,
            gb1,
            gw2,
            gb2,
            pooled,
            l0,
            l2,
            kept,
            counts,
            _i64(seed),
            _i64(offset),
            float(tau),
            float(gamma),
            float(zeta),
            float(shift),
            d,
            e,
            hid,
            ghid,
            DIRECTED=bool(directed),
            **meta,
        )
    return pooled, l0, l2, kept, counts


def backward(
    ptr,
    nodes,
    pair_ptr,
    tensors,
    kind,
    seed,
    offset,
    tau,
    gamma,
    zeta,
    shift,
    directed,
    counts,
    g_pooled,
    g_l0,
    g_l2,
):
    """(g_pos [N, d], g_epos [N, b], the 8 weight gradients)."""
    emb = tensors[0]
    _check_device(ptr, nodes, pair_ptr, counts, g_pooled, g_l0, g_l2, *tensors)
    num_graphs = ptr.shape[0] - 1
    (d, e, hid, ghid), meta = _meta(tensors, kind)
    shapes = [tuple(t.shape) for t in tensors[2:]]  # the 8 weights, h then gate
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    num_params = sum(sizes)
    g_pos = torch.empty(nodes.shape[0], d, dtype=emb.dtype, device=emb.device)
    g_epos = torch.zeros(nodes.shape[0], e, dtype=emb.dtype, device=emb.device)
    partial = torch.zeros(num_graphs, num_params, dtype=emb.dtype, device=emb.device)
    if num_graphs:
        eemb, gw1, gb1, gw2, gb2 = _gate_ptrs(tensors)
        _backward_kernel[(num_graphs,)](
            ptr,
            nodes,
            pair_ptr,
            emb,
            eemb,
            *tensors[2:6],
            gw1,
            gb1,
            gw2,
            gb2,
            counts,
            g_pooled,
            g_l0,
            g_l2,
            g_pos,
            g_epos,
            partial,
            num_params,
            _i64(seed),
            _i64(offset),
            float(tau),
            float(gamma),
            float(zeta),
            float(shift),
            d,
            e,
            hid,
            ghid,
            DIRECTED=bool(directed),
            num_warps=_BACKWARD_WARPS,
            **meta,
        )
    flat = partial.sum(0)
    grads = [chunk.reshape(shape) for chunk, shape in zip(flat.split(sizes), shapes)]
    return [g_pos, g_epos, *grads]
