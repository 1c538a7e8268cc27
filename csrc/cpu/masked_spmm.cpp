// CPU (OpenMP) kernels of the masked, renormalised propagation. Semantics: ops/reference.py.
// Every loop is row-parallel over one of the two CSRs: no atomics, deterministic results.
// Each kernel is a template over the float type; the ATen wrappers at the end dispatch on dtype.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "cpu/vector_math.h"  // before gates.h: its exp/log calls vectorise
#include "gates.h"
#include "philox.h"

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 64;  // rows per dynamic OpenMP chunk (degrees are long-tailed)
// Edges ahead whose gathered rows are fetched: the products are gather-latency bound. The
// lookahead runs over the flat edge array, across row ends (as csr_spmm.cpp's, which measured the
// distances), so a row does not start with cold gathers (Gowalla's rows average ~23 edges).
constexpr int64_t kLookahead = 48;

template <typename T>
inline T rsqrt_or_zero(T d) { return d > T(0) ? T(1) / std::sqrt(d) : T(0); }

template <typename T>
inline T dot(const T* a, const T* b, int64_t d) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

template <typename T>
const T* ptr_or_null(const c10::optional<torch::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

// w[m, e] = z_m(p_e, q_e, u_e) * omega_e; p = sigmoid(phi), q = sigmoid(-phi) (may be null when
// no mode needs them). With dw, also dw/dphi = omega dz/dphi (expect: p (1 - p); 0 for the other
// modes here). One block of kPhiloxBlock edges per call, the mode a template argument, so the loop
// has no per-edge switch and vectorises.
template <int kMode, typename T>
inline void mask_block(const T* p, const T* q, const T* omega, const float* u, int count, T* o,
                       T* dw) {
  for (int l = 0; l < count; ++l)
    o[l] = mask_from_probs<T>(kMode, p ? p[l] : T(1), q ? q[l] : T(0), u[l]) *
           (omega ? omega[l] : T(1));
  if (dw)
    for (int l = 0; l < count; ++l)
      dw[l] = kMode == EXPECT ? p[l] * (T(1) - p[l]) * (omega ? omega[l] : T(1)) : T(0);
}

template <typename T>
struct GateParams {
  T tau, gamma, zeta;
};

// The same for gate kind kKind (mode GATE_MODE0 + kKind) from the logits phi: gate_eval's value and
// derivative in one simd loop (cpu/vector_math.h). The loop always runs all kPhiloxBlock lanes (a
// tail block zero-padded): vector libm rounds differently from scalar libm in the last bit, and an
// edge must get the same value wherever its block starts (sample_mask's [K, E] rows, each layer's
// propagation, the backward's regeneration). concrete_st's binary value is arm_pos's comparison
// with torch's q, as gate_eval defines it, so its decisions are bit-identical to the reference's.
template <int kKind, typename T>
inline void gate_block(const T* phi, const T* q, const T* omega, const float* u, int count,
                       GateParams<T> g, T* o, T* dw) {
  T ph[kPhiloxBlock] = {}, qb[kPhiloxBlock] = {}, z[kPhiloxBlock], dz[kPhiloxBlock];
  std::copy(phi, phi + count, ph);
  if (kKind == CONCRETE_ST) std::copy(q, q + count, qb);
#pragma omp simd
  for (int l = 0; l < kPhiloxBlock; ++l) {
    const GateValue<T> v = gate_eval<T>(kKind, ph[l], u[l], g.tau, g.gamma, g.zeta);
    z[l] = kKind == CONCRETE_ST ? mask_from_probs<T>(ARM_POS, T(1), qb[l], u[l]) : v.z;
    dz[l] = v.dz;
  }
  for (int l = 0; l < count; ++l) {
    const T om = omega ? omega[l] : T(1);
    o[l] = z[l] * om;
    if (dw) dw[l] = dz[l] * om;
  }
}

template <typename T>
void edge_weights_kernel(const T* phi, const T* p, const T* q, const T* omega,
                         const std::vector<int64_t>& modes, uint64_t seed, uint64_t offset,
                         int64_t num_edges, GateParams<T> gate, T* out, T* dout) {
  const int64_t m_count = static_cast<int64_t>(modes.size());
  bool need_u = false;
  for (auto m : modes)
    need_u |= m >= GATE_MODE0 ? gate_needs_uniform(static_cast<int>(m - GATE_MODE0))
                              : mode_needs_uniform(static_cast<int>(m));
  const int64_t blocks = (num_edges + kPhiloxBlock - 1) / kPhiloxBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t e0 = b * kPhiloxBlock;
    const int count = static_cast<int>(std::min<int64_t>(kPhiloxBlock, num_edges - e0));
    float u[kPhiloxBlock] = {0};
    if (need_u) philox_uniform_block(seed, offset + static_cast<uint64_t>(e0), u);
    const T* fb = phi ? phi + e0 : nullptr;
    const T* pb = p ? p + e0 : nullptr;
    const T* qb = q ? q + e0 : nullptr;
    const T* ob = omega ? omega + e0 : nullptr;
    for (int64_t m = 0; m < m_count; ++m) {
      T* o = out + m * num_edges + e0;
      T* d = dout ? dout + m * num_edges + e0 : nullptr;
      switch (static_cast<int>(modes[m])) {
        case ARM_POS: mask_block<ARM_POS>(pb, qb, ob, u, count, o, d); break;
        case ARM_NEG: mask_block<ARM_NEG>(pb, qb, ob, u, count, o, d); break;
        case BERNOULLI: mask_block<BERNOULLI>(pb, qb, ob, u, count, o, d); break;
        case EXPECT: mask_block<EXPECT>(pb, qb, ob, u, count, o, d); break;
        case HARD: mask_block<HARD>(pb, qb, ob, u, count, o, d); break;
        case GATE_MODE0 + CONCRETE: gate_block<CONCRETE>(fb, qb, ob, u, count, gate, o, d); break;
        case GATE_MODE0 + CONCRETE_ST: gate_block<CONCRETE_ST>(fb, qb, ob, u, count, gate, o, d); break;
        case GATE_MODE0 + HARD_CONCRETE: gate_block<HARD_CONCRETE>(fb, qb, ob, u, count, gate, o, d); break;
        case GATE_MODE0 + HARD_CONCRETE_MEAN:
          gate_block<HARD_CONCRETE_MEAN>(fb, qb, ob, u, count, gate, o, d);
          break;
        default: mask_block<ONES>(pb, qb, ob, u, count, o, d);
      }
    }
  }
}

// r[r] = (sum of w over CSR row r, through eid when given, + self-loop)^-1/2, 0 for empty degree.
template <typename T>
void degree_rsqrt_kernel(const int64_t* rowptr, const int64_t* eid, const T* w, T one,
                         int64_t num_rows, T* r) {
  const int64_t num_edges = rowptr[num_rows];
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t row = 0; row < num_rows; ++row) {
    T s = one;
    for (int64_t j = rowptr[row]; j < rowptr[row + 1]; ++j) {
      if (eid && j + kLookahead < num_edges)  // through the permutation: a random read
        __builtin_prefetch(w + eid[j + kLookahead]);
      s += w[eid ? eid[j] : j];
    }
    r[row] = rsqrt_or_zero(s);
  }
}

// Columns per pass over a row's edges (KC below): the accumulators stay in registers across the
// row instead of a load-add-store of y per edge. The widest block is 256 bytes per mask (8 of the
// 16 AVX2 registers); d at or under a quarter or half of it gets that narrower block, so the pass
// has a compile-time trip count. Each mask keeps the whole block, even the dual (M = 2) at 16
// registers: splitting d between the masks reads every row's edges twice, which measured 1.3-1.7x
// slower on Gowalla at d = 64 and 128 (AMD EPYC, AVX2); a narrow block is 1.3x faster at d = 32.
template <typename T>
constexpr int64_t kWideCols = 256 / sizeof(T);

// One row's block of columns k0 .. k0 + n: y[m, r, k0 + k] = r_row[m, r] * sum_j w[m, eid_j]
// r_col[m, col_j] x[col_j, k0 + k] (+ r_row^2 x_self[r, k0 + k]). The accumulators are this
// function's own, with a compile-time trip count when kFull (n == KC), so they live in registers
// across the row (declared in the caller for both instantiations, they were a stack array that
// every edge loaded and stored).
template <typename T, int M, int64_t KC, bool kFull>
inline void spmm_row(const int64_t* col, const int64_t* eid, const T* w, const T* r_row,
                     const T* r_col, const T* x, const T* x_self, T* y, int64_t r, int64_t begin,
                     int64_t end, int64_t num_rows, int64_t num_cols, int64_t num_edges, int64_t d,
                     int64_t k0, int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t len = kFull ? KC : n;
  T acc[M][KC] = {};
  for (int64_t j = begin; j < end; ++j) {
    if (j + kLookahead < num_edges) {  // past the row's end too: the next rows' gathers
      const T* ahead = x + col[j + kLookahead] * d + k0;
      for (int64_t k = 0; k < len; k += kLine) __builtin_prefetch(ahead + k);
      if (eid)  // item side: w is read through the permutation, a random access too
        for (int m = 0; m < M; ++m) __builtin_prefetch(w + m * num_edges + eid[j + kLookahead]);
    }
    const int64_t c = col[j];
    const int64_t e = eid ? eid[j] : j;
    T coef[M];
    for (int m = 0; m < M; ++m) coef[m] = w[m * num_edges + e] * (r_col ? r_col[m * num_cols + c] : T(1));
    const T* xc = x + c * d + k0;
#pragma omp simd
    for (int64_t k = 0; k < len; ++k) {
      const T v = xc[k];  // loaded once for all M outputs (the dual ARM pass)
      for (int m = 0; m < M; ++m) acc[m][k] += coef[m] * v;
    }
  }
  for (int m = 0; m < M; ++m) {
    const T rr = r_row ? r_row[m * num_rows + r] : T(1);
    const T ss = rr * rr;
    const T* xs = x_self ? x_self + r * d + k0 : nullptr;
    T* ym = y + (m * num_rows + r) * d + k0;
    if (xs)
      for (int64_t k = 0; k < len; ++k) ym[k] = rr * acc[m][k] + ss * xs[k];
    else
      for (int64_t k = 0; k < len; ++k) ym[k] = rr * acc[m][k];
  }
}

// y[m, r] = r_row[m, r] * sum_j w[m, eid_j] r_col[m, col_j] x[col_j] (+ r_row^2 x_self[r]).
template <typename T, int M, int64_t KC>
void spmm_kernel(const int64_t* rowptr, const int64_t* col, const int64_t* eid, const T* w,
                 const T* r_row, const T* r_col, const T* x, const T* x_self, T* y, int64_t num_rows,
                 int64_t num_cols, int64_t num_edges, int64_t d) {
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    for (int64_t k0 = 0; k0 < d; k0 += KC) {
      const int64_t n = std::min(KC, d - k0);
      if (n == KC)
        spmm_row<T, M, KC, true>(col, eid, w, r_row, r_col, x, x_self, y, r, begin, end, num_rows,
                                 num_cols, num_edges, d, k0, n);
      else
        spmm_row<T, M, KC, false>(col, eid, w, r_row, r_col, x, x_self, y, r, begin, end,
                                  num_rows, num_cols, num_edges, d, k0, n);
    }
  }
}

// dL/dw_e = r_u r_i G_e - 1/2 r_u^2 s_u - 1/2 r_i^2 t_i with G_e = <gy_u, x_i> + <gy_i, x_u>,
// s_u = sum_{e in u} G_e A_e (+ 2 r_u^2 <gy_u, x_u> with self-loops), t_i likewise.
template <typename T>
void edge_grad_kernel(const int64_t* pu, const int64_t* ci, const int64_t* pi, const int64_t* cu,
                      const int64_t* eid, const T* w, const T* ru, const T* ri, const T* xu,
                      const T* xi, const T* gu, const T* gi, bool self_loop, int64_t nu, int64_t ni,
                      int64_t d, T* g) {
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t u = 0; u < nu; ++u)
    for (int64_t e = pu[u]; e < pu[u + 1]; ++e) {
      const int64_t i = ci[e];
      g[e] = dot(gu + u * d, xi + i * d, d) + dot(gi + i * d, xu + u * d, d);
    }
  if (ru == nullptr) return;  // no renormalisation: dL/dw = G
  // Half the degree term of each node, 1/2 r^2 s, computed once per node.
  std::vector<T> hs_u(nu), ht_i(ni);
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t u = 0; u < nu; ++u) {
    T s = self_loop ? 2 * ru[u] * ru[u] * dot(gu + u * d, xu + u * d, d) : T(0);
    for (int64_t e = pu[u]; e < pu[u + 1]; ++e) s += g[e] * ru[u] * w[e] * ri[ci[e]];
    hs_u[u] = T(0.5) * ru[u] * ru[u] * s;
  }
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t i = 0; i < ni; ++i) {
    T t = self_loop ? 2 * ri[i] * ri[i] * dot(gi + i * d, xi + i * d, d) : T(0);
    for (int64_t j = pi[i]; j < pi[i + 1]; ++j) t += g[eid[j]] * ru[cu[j]] * w[eid[j]] * ri[i];
    ht_i[i] = T(0.5) * ri[i] * ri[i] * t;
  }
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t u = 0; u < nu; ++u)
    for (int64_t e = pu[u]; e < pu[u + 1]; ++e)
      g[e] = ru[u] * ri[ci[e]] * g[e] - hs_u[u] - ht_i[ci[e]];
}


// The backward of one propagation (one mask) with the edge gradient, with the row gathers of
// the two products only (spmm + spmm + edge_grad gather four rows per edge, in four passes):
//   user pass (CSR(R)):   gx_u[u] = r_u sum_e w_e r_i gy_i[i] (+ r_u^2 gy_u[u]); the gathered
//                         gy_i row also gives the half <gy_i[i], x_u[u]> of G_e;
//   item pass (CSR(R^T)): gx_i[i] = r_i sum_e w_e r_u gy_u[u] (+ r_i^2 gy_i[i]); the gathered
//                         gy_u row gives the other half <gy_u[u], x_i[i]>, completing G_e, and
//                         t_i = r_i sum_e G_e w_e r_u while the item's edges are in cache;
//   user pass, scalars:   s_u = r_u sum_e G_e w_e r_i, then
//                         dL/dw_e = r_u r_i G_e - 1/2 r_u^2 s_u - 1/2 r_i^2 t_i (edge_grad_kernel).
// r_u == nullptr: no renormalisation (dL/dw = G). gx_u/gx_i null: not formed (G still is).

// One row's block of columns k0 .. k0 + n of either pass: for each edge j of the row (edge id
// eid[j], or j itself in CSR(R)), G_e (+)= <gy_col[col_j], x_row> over the block and, when gx is
// given, gx[r, k0 + k] = r_row sum_j w_e r_col gy_col[col_j, k0 + k] (+ r_row^2 g_self[r]). The
// accumulators are the function's own (as spmm_row's: registers when kFull).
template <typename T, int64_t KC, bool kFull>
inline void backward_row(const int64_t* col, const int64_t* eid, const T* w, const T* r_row,
                         const T* r_col, const T* g_col, const T* x, const T* g_self,
                         bool self_loop, bool add, int64_t r, int64_t begin, int64_t end,
                         int64_t num_edges, int64_t d, int64_t k0, int64_t n, T* gx, T* G) {
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t len = kFull ? KC : n;
  const T* x_row = x + r * d + k0;
  T acc[KC] = {};
  for (int64_t j = begin; j < end; ++j) {
    if (j + kLookahead < num_edges) {  // past the row's end too, as spmm_row
      const T* ahead = g_col + col[j + kLookahead] * d + k0;
      for (int64_t k = 0; k < len; k += kLine) __builtin_prefetch(ahead + k);
      if (eid) {
        __builtin_prefetch(w + eid[j + kLookahead]);
        __builtin_prefetch(G + eid[j + kLookahead]);
      }
    }
    const int64_t c = col[j];
    const int64_t e = eid ? eid[j] : j;
    const T* gc = g_col + c * d + k0;
    T dot = 0;
    if (gx) {
      const T coef = w[e] * (r_col ? r_col[c] : T(1));
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < len; ++k) {
        const T v = gc[k];
        acc[k] += coef * v;
        dot += v * x_row[k];
      }
    } else {
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < len; ++k) dot += gc[k] * x_row[k];
    }
    G[e] = add ? G[e] + dot : dot;
  }
  if (gx) {
    const T rr = r_row ? r_row[r] : T(1);
    const T* gs = g_self + r * d + k0;
    T* y = gx + r * d + k0;
    for (int64_t k = 0; k < len; ++k) y[k] = rr * acc[k] + (self_loop ? rr * rr * gs[k] : T(0));
  }
}

// One pass of backward_row over every row of a CSR. ``add``: G accumulates onto the other
// pass's half.
template <typename T, int64_t KC>
void backward_pass(const int64_t* rowptr, const int64_t* col, const int64_t* eid, const T* w,
                   const T* r_row, const T* r_col, const T* g_col, const T* x, const T* g_self,
                   bool self_loop, bool add, int64_t num_rows, int64_t d, T* gx, T* G) {
  const int64_t num_edges = rowptr[num_rows];
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    for (int64_t k0 = 0; k0 < d; k0 += KC) {
      const int64_t n = std::min(KC, d - k0);
      const bool add_k = add || k0 > 0;
      if (n == KC)
        backward_row<T, KC, true>(col, eid, w, r_row, r_col, g_col, x, g_self, self_loop, add_k,
                                  r, begin, end, num_edges, d, k0, n, gx, G);
      else
        backward_row<T, KC, false>(col, eid, w, r_row, r_col, g_col, x, g_self, self_loop, add_k,
                                   r, begin, end, num_edges, d, k0, n, gx, G);
    }
  }
}

template <typename T, int64_t KC>
void spmm_backward_kernel(const int64_t* pu, const int64_t* ci, const int64_t* pi,
                          const int64_t* cu, const int64_t* eid, const T* w, const T* ru,
                          const T* ri, const T* xu, const T* xi, const T* gu, const T* gi,
                          bool self_loop, int64_t nu, int64_t ni, int64_t d, T* gxu, T* gxi,
                          T* G) {
  const int64_t num_edges = pu[nu];
  backward_pass<T, KC>(pu, ci, nullptr, w, ru, ri, gi, xu, gu, self_loop, false, nu, d, gxu, G);
  backward_pass<T, KC>(pi, cu, eid, w, ri, ru, gu, xi, gi, self_loop, true, ni, d, gxi, G);
  if (!ru) return;
  std::vector<T> ht_i(ni);
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t i = 0; i < ni; ++i) {
    T t = 0;
    for (int64_t j = pi[i]; j < pi[i + 1]; ++j) {
      if (j + kLookahead < num_edges) {  // G and w are read through the permutation
        __builtin_prefetch(G + eid[j + kLookahead]);
        __builtin_prefetch(w + eid[j + kLookahead]);
      }
      t += G[eid[j]] * ru[cu[j]] * w[eid[j]];
    }
    t *= ri[i];
    if (self_loop) t += 2 * ri[i] * ri[i] * dot(gi + i * d, xi + i * d, d);
    ht_i[i] = T(0.5) * ri[i] * ri[i] * t;
  }
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t u = 0; u < nu; ++u) {
    const int64_t begin = pu[u], end = pu[u + 1];
    T s = self_loop ? 2 * ru[u] * ru[u] * dot(gu + u * d, xu + u * d, d) : T(0);
    for (int64_t e = begin; e < end; ++e) s += G[e] * ru[u] * w[e] * ri[ci[e]];
    const T hs = T(0.5) * ru[u] * ru[u] * s;
    for (int64_t e = begin; e < end; ++e) G[e] = ru[u] * ri[ci[e]] * G[e] - hs - ht_i[ci[e]];
  }
}
}  // namespace

// ------------------------------------------------------------------------- ATen entry points
std::vector<torch::Tensor> edge_weights(const c10::optional<torch::Tensor>& phi,
                                        const c10::optional<torch::Tensor>& p,
                                        const c10::optional<torch::Tensor>& q,
                                        const c10::optional<torch::Tensor>& edge_weight,
                                        const std::vector<int64_t>& modes, int64_t seed, int64_t offset,
                                        int64_t num_edges, at::ScalarType dtype,
                                        const torch::Device& device, double tau, double gamma,
                                        double zeta, bool need_grad) {
  TORCH_CHECK(device.is_cpu(), "cpu::edge_weights called for ", device);
  for (auto m : modes)
    TORCH_CHECK(m >= 0 && m <= GATE_MODE0 + HARD_CONCRETE_MEAN, "edge_weights (cpu): unknown mode ", m);
  const auto shape = std::vector<int64_t>{static_cast<int64_t>(modes.size()), num_edges};
  auto w = torch::empty(shape, torch::dtype(dtype));
  auto dw = need_grad ? torch::empty(shape, torch::dtype(dtype)) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(dtype, "edge_weights_cpu", [&] {
    const GateParams<scalar_t> gate{static_cast<scalar_t>(tau), static_cast<scalar_t>(gamma),
                                    static_cast<scalar_t>(zeta)};
    edge_weights_kernel<scalar_t>(ptr_or_null<scalar_t>(phi), ptr_or_null<scalar_t>(p),
                                  ptr_or_null<scalar_t>(q), ptr_or_null<scalar_t>(edge_weight),
                                  modes, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                                  num_edges, gate, w.data_ptr<scalar_t>(),
                                  need_grad ? dw.data_ptr<scalar_t>() : nullptr);
  });
  if (need_grad) return {w, dw};
  return {w};
}

std::vector<torch::Tensor> degree_rsqrt(const torch::Tensor& rowptr_u, const torch::Tensor& rowptr_i,
                                        const torch::Tensor& perm, const torch::Tensor& w,
                                        bool self_loop) {
  const int64_t m_count = w.size(0), num_edges = w.size(1);
  const int64_t nu = rowptr_u.numel() - 1, ni = rowptr_i.numel() - 1;
  auto r_u = torch::empty({m_count, nu}, w.options());
  auto r_i = torch::empty({m_count, ni}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "degree_rsqrt_cpu", [&] {
    const scalar_t one = self_loop ? scalar_t(1) : scalar_t(0);
    for (int64_t m = 0; m < m_count; ++m) {
      const scalar_t* wm = w.data_ptr<scalar_t>() + m * num_edges;
      degree_rsqrt_kernel<scalar_t>(rowptr_u.data_ptr<int64_t>(), nullptr, wm, one, nu,
                                    r_u.data_ptr<scalar_t>() + m * nu);
      degree_rsqrt_kernel<scalar_t>(rowptr_i.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), wm, one,
                                    ni, r_i.data_ptr<scalar_t>() + m * ni);
    }
  });
  return {r_u, r_i};
}

torch::Tensor spmm(const torch::Tensor& rowptr, const torch::Tensor& col,
                   const c10::optional<torch::Tensor>& eid, const torch::Tensor& w,
                   const c10::optional<torch::Tensor>& r_row, const c10::optional<torch::Tensor>& r_col,
                   const torch::Tensor& x, const c10::optional<torch::Tensor>& x_self) {
  const int64_t m_count = w.size(0), num_edges = w.size(1);
  const int64_t num_rows = rowptr.numel() - 1, num_cols = x.size(0), d = x.size(1);
  TORCH_CHECK(m_count == 1 || m_count == 2, "spmm: w must have 1 or 2 rows (modes), got ", m_count);
  auto y = torch::empty({m_count, num_rows, d}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_cpu", [&] {
    constexpr int64_t wide = kWideCols<scalar_t>;
    auto pick = [d](auto quarter, auto half, auto full) {
      return d <= wide / 4 ? quarter : d <= wide / 2 ? half : full;
    };
    auto kernel = m_count == 1 ? pick(spmm_kernel<scalar_t, 1, wide / 4>,
                                      spmm_kernel<scalar_t, 1, wide / 2>, spmm_kernel<scalar_t, 1, wide>)
                               : pick(spmm_kernel<scalar_t, 2, wide / 4>,
                                      spmm_kernel<scalar_t, 2, wide / 2>, spmm_kernel<scalar_t, 2, wide>);
    kernel(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), ptr_or_null<int64_t>(eid),
           w.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(r_row), ptr_or_null<scalar_t>(r_col),
           x.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(x_self), y.data_ptr<scalar_t>(), num_rows,
           num_cols, num_edges, d);
  });
  return y;
}

torch::Tensor edge_grad(const torch::Tensor& rowptr_u, const torch::Tensor& col_item,
                        const torch::Tensor& rowptr_i, const torch::Tensor& col_user,
                        const torch::Tensor& perm, const torch::Tensor& w,
                        const c10::optional<torch::Tensor>& r_u, const c10::optional<torch::Tensor>& r_i,
                        const torch::Tensor& x_u, const torch::Tensor& x_i, const torch::Tensor& gy_u,
                        const torch::Tensor& gy_i, bool self_loop) {
  auto g = torch::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "edge_grad_cpu", [&] {
    edge_grad_kernel<scalar_t>(
        rowptr_u.data_ptr<int64_t>(), col_item.data_ptr<int64_t>(), rowptr_i.data_ptr<int64_t>(),
        col_user.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), w.data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(r_u), ptr_or_null<scalar_t>(r_i), x_u.data_ptr<scalar_t>(),
        x_i.data_ptr<scalar_t>(), gy_u.data_ptr<scalar_t>(), gy_i.data_ptr<scalar_t>(), self_loop,
        rowptr_u.numel() - 1, rowptr_i.numel() - 1, x_u.size(1), g.data_ptr<scalar_t>());
  });
  return g;
}


std::vector<torch::Tensor> spmm_backward(const torch::Tensor& rowptr_u, const torch::Tensor& col_item,
                                         const torch::Tensor& rowptr_i, const torch::Tensor& col_user,
                                         const torch::Tensor& perm, const torch::Tensor& w,
                                         const c10::optional<torch::Tensor>& r_u,
                                         const c10::optional<torch::Tensor>& r_i,
                                         const torch::Tensor& x_u, const torch::Tensor& x_i,
                                         const torch::Tensor& gy_u, const torch::Tensor& gy_i,
                                         bool self_loop, bool need_xu, bool need_xi) {
  TORCH_CHECK(w.device().is_cpu(), "spmm_backward (cpu): CPU tensors only");
  TORCH_CHECK(w.dim() == 1, "spmm_backward (cpu): w must be one mask [E]");
  const int64_t d = x_u.size(1);
  auto G = torch::empty_like(w);
  auto gxu = need_xu ? torch::empty_like(x_u) : torch::Tensor();
  auto gxi = need_xi ? torch::empty_like(x_i) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "spmm_backward_cpu", [&] {
    constexpr int64_t wide = kWideCols<scalar_t>;
    auto kernel = d <= wide / 4   ? spmm_backward_kernel<scalar_t, wide / 4>
                  : d <= wide / 2 ? spmm_backward_kernel<scalar_t, wide / 2>
                                  : spmm_backward_kernel<scalar_t, wide>;
    kernel(rowptr_u.data_ptr<int64_t>(), col_item.data_ptr<int64_t>(), rowptr_i.data_ptr<int64_t>(),
           col_user.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), w.data_ptr<scalar_t>(),
           ptr_or_null<scalar_t>(r_u), ptr_or_null<scalar_t>(r_i), x_u.data_ptr<scalar_t>(),
           x_i.data_ptr<scalar_t>(), gy_u.data_ptr<scalar_t>(), gy_i.data_ptr<scalar_t>(), self_loop,
           rowptr_u.numel() - 1, rowptr_i.numel() - 1, d,
           need_xu ? gxu.data_ptr<scalar_t>() : nullptr, need_xi ? gxi.data_ptr<scalar_t>() : nullptr,
           G.data_ptr<scalar_t>());
  });
  return {need_xu ? gxu : torch::Tensor(), need_xi ? gxi : torch::Tensor(), G};
}

}  // namespace cpu
}  // namespace fgd
