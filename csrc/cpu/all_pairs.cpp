// CPU (OpenMP) kernels of ops.all_pairs_interaction (L0-SIGN's gated all-pairs pass); semantics in
// fastgcn_denoise/ops/all_pairs.py. One thread per graph: it walks the graph's k(k+1)/2 pairs
// i <= j once, runs the gate MLP, draws the gate from Philox (csrc/gates.h, the one formula), runs
// h, and scatters s * z into the ends' sums in thread-local buffers: no atomics. Backward
// recomputes every pair (uniforms regenerated) from the per-node kept counts saved by forward.
// Weight gradients are summed per thread and reduced in thread order after the loop (schedule
// static): deterministic for a given thread count.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "gates.h"

namespace fgd {
namespace cpu {
namespace {

using torch::Tensor;

// The tensors in the op's order, as raw pointers; the two weight matrices of each MLP are
// transposed once per call so that every inner loop runs over a contiguous hidden or output axis.
template <typename T>
struct Model {
  const T* node_emb;  // [F, d]
  const T* edge_emb;  // [F, b]
  int64_t d, b, hidden, g_hidden;
  std::vector<T> w1t, b1, w2t, b2;    // h: W1^T [d, H], b1 [H], W2^T [H, d], b2 [d]
  std::vector<T> gw1t, gb1, gw2;      // gate: W1g^T [b, Hg], b1g [Hg], w2g [Hg]
  const T *w1, *w2, *gw1;             // the same in nn.Linear's [out, in] (backward's products)
  T gb2 = T(0);
  bool gated;

  Model(const std::vector<Tensor>& t, bool gated_) : gated(gated_) {
    node_emb = t[0].data_ptr<T>();
    edge_emb = t[1].data_ptr<T>();
    d = t[0].size(1);
    b = t[1].size(1);
    hidden = t[2].size(0);
    w1t = transposed(t[2]);
    w1 = t[2].data_ptr<T>();
    w2 = t[4].data_ptr<T>();
    gw1 = t[6].data_ptr<T>();
    b1 = flat(t[3]);
    w2t = transposed(t[4]);
    b2 = flat(t[5]);
    if (gated) {
      g_hidden = t[6].size(0);
      gw1t = transposed(t[6]);
      gb1 = flat(t[7]);
      gw2 = flat(t[8]);
      gb2 = t[9].data_ptr<T>()[0];
    } else {
      g_hidden = 0;
    }
  }

  static std::vector<T> flat(const Tensor& x) {
    const T* p = x.data_ptr<T>();
    return std::vector<T>(p, p + x.numel());
  }
  static std::vector<T> transposed(const Tensor& x) {  // [r, c] -> [c, r]
    const int64_t r = x.size(0), c = x.size(1);
    const T* p = x.data_ptr<T>();
    std::vector<T> out(r * c);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) out[j * r + i] = p[i * c + j];
    return out;
  }
};

// out[n] = bias[n] + sum_t x[t] w[t * n_out + n], then ReLU into act (both [n_out]).
// Widths known at compile time (0: given at run time). The paper's model (d = b = 8, hidden 32)
// runs a specialisation whose loops the compiler unrolls into whole SIMD vectors.
template <int D_, int B_, int H_, int G_>
struct Sizes {
  static constexpr int D = D_, B = B_, H = H_, G = G_;
};
using RuntimeSizes = Sizes<0, 0, 0, 0>;
using PaperSizes = Sizes<8, 8, 32, 32>;

template <int N>
constexpr int64_t width(int64_t n) {
  return N ? N : n;
}

template <int NI, int NO, typename T>
inline void dense_relu(const T* __restrict x, int64_t n_in_, const T* __restrict wt,
                       const T* __restrict bias, int64_t n_out_, T* __restrict pre, T* __restrict act) {
  const int64_t n_in = width<NI>(n_in_), n_out = width<NO>(n_out_);
  std::copy(bias, bias + n_out, pre);
  for (int64_t t = 0; t < n_in; ++t) {
    const T xt = x[t];
    const T* row = wt + t * n_out;
    for (int64_t n = 0; n < n_out; ++n) pre[n] += xt * row[n];
  }
  for (int64_t n = 0; n < n_out; ++n) act[n] = pre[n] > T(0) ? pre[n] : T(0);
}

// Backward of the first layer of an MLP on the product x = row_i * row_j: accumulates dW^T [n_in,
// n_out] += x dpre^T into gwt, then d row_i += (W^T dpre) * row_j and d row_j += (W^T dpre) * row_i.
// W is read in nn.Linear's [n_out, n_in] layout, so that W^T dpre is a sum of rows (SIMD over n_in)
// and not a chain of dependent scalar additions.
template <int NI, int NO, typename T>
inline void product_layer_backward(const T* __restrict x, int64_t n_in_, const T* __restrict w,
                                   const T* __restrict dpre, int64_t n_out_, T* __restrict gwt,
                                   const T* row_i, const T* row_j, T* g_i, T* g_j) {
  const int64_t n_in = width<NI>(n_in_), n_out = width<NO>(n_out_);
  T dx[NI ? NI : 64];
  T* dxp = n_in <= 64 ? dx : new T[n_in];
  for (int64_t t = 0; t < n_in; ++t) dxp[t] = T(0);
  for (int64_t n = 0; n < n_out; ++n) {
    const T dn = dpre[n];
    const T* row = w + n * n_in;
    for (int64_t t = 0; t < n_in; ++t) dxp[t] += row[t] * dn;
  }
  for (int64_t t = 0; t < n_in; ++t) {
    T* gw = gwt + t * n_out;
    for (int64_t n = 0; n < n_out; ++n) gw[n] += x[t] * dpre[n];
    g_i[t] += dxp[t] * row_j[t];
    g_j[t] += dxp[t] * row_i[t];
  }
  if (dxp != dx) delete[] dxp;
}

// One pair's forward values; the buffers live in the thread's scratch.
template <typename T, typename S>
struct Pair {
  std::vector<T> a, hpre, r, z, ae, epre, re;
  T logit = T(0), s = T(1), ds = T(0), pi = T(0);

  explicit Pair(const Model<T>& m)
      : a(m.d), hpre(m.hidden), r(m.hidden), z(m.d), ae(m.b), epre(m.g_hidden), re(m.g_hidden) {}

  // The gate of the pair of features (fi, fj) (s = 1 without one); counter: its Philox counter.
  void gate(const Model<T>& m, int64_t fi, int64_t fj, int kind, uint64_t seed, uint64_t counter, T tau,
            T gamma, T zeta, T shift) {
    if (!m.gated) {
      s = T(1);
      ds = T(0);
      return;
    }
    const int64_t b = width<S::B>(m.b), Hg = width<S::G>(m.g_hidden);
    const T* ei = m.edge_emb + fi * b;
    const T* ej = m.edge_emb + fj * b;
    for (int64_t t = 0; t < b; ++t) ae[t] = ei[t] * ej[t];
    dense_relu<S::B, S::G>(ae.data(), b, m.gw1t.data(), m.gb1.data(), Hg, epre.data(), re.data());
    logit = m.gb2;
    for (int64_t h = 0; h < Hg; ++h) logit += m.gw2[h] * re[h];
    const float u = gate_needs_uniform(kind) ? philox_uniform(seed, counter) : 0.0f;
    const GateValue<T> g = gate_eval<T>(kind, logit, u, tau, gamma, zeta);
    s = g.z;
    ds = g.dz;
    pi = T(1) / (T(1) + std::exp(-(logit + shift)));
  }

  // h on the pair: a = u_i * u_j, hpre, r = relu(hpre), z (only for kept pairs).
  void interact(const Model<T>& m, int64_t fi, int64_t fj) {
    const int64_t d = width<S::D>(m.d), H = width<S::H>(m.hidden);
    const T* ui = m.node_emb + fi * d;
    const T* uj = m.node_emb + fj * d;
    for (int64_t t = 0; t < d; ++t) a[t] = ui[t] * uj[t];
    dense_relu<S::D, S::H>(a.data(), d, m.w1t.data(), m.b1.data(), H, hpre.data(), r.data());
    T* __restrict zp = z.data();
    const T* __restrict w2t = m.w2t.data();
    for (int64_t c = 0; c < d; ++c) zp[c] = m.b2[c];
    for (int64_t h = 0; h < H; ++h) {
      const T rh = r[h];
      for (int64_t c = 0; c < d; ++c) zp[c] += rh * w2t[h * d + c];
    }
  }
};

struct Scalars {
  int kind;
  uint64_t seed, offset;
  double tau, gamma, zeta, shift;
  bool directed;
};

template <typename T, typename S>
void forward_impl(const int64_t* ptr, const int64_t* nodes, const int64_t* pair_ptr, int64_t num_graphs,
                  const Model<T>& m, const Scalars& sc, T* pooled, T* l0, T* l2, int64_t* kept,
                  int32_t* counts) {
  const T tau = T(sc.tau), gamma = T(sc.gamma), zeta = T(sc.zeta), shift = T(sc.shift);
  const int64_t d = width<S::D>(m.d);
#pragma omp parallel
  {
    Pair<T, S> p(m);
    std::vector<T> acc;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < num_graphs; ++g) {
      const int64_t base = ptr[g], k = ptr[g + 1] - base;
      acc.assign(k * d, T(0));
      int32_t* cnt = counts + base;
      std::fill(cnt, cnt + k, 0);
      T l0_sum = T(0), l2_sum = T(0);
      int64_t kept_sum = 0, q = 0;
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = i; j < k; ++j, ++q) {
          const int64_t fi = nodes[base + i], fj = nodes[base + j];
          p.gate(m, fi, fj, sc.kind, sc.seed, sc.offset + static_cast<uint64_t>(pair_ptr[g] + q), tau, gamma,
                 zeta, shift);
          l0_sum += p.pi;
          if (!(p.s > T(0))) continue;  // a dropped pair: no h, no message
          ++kept_sum;
          p.interact(m, fi, fj);
          for (int64_t c = 0; c < d; ++c) l2_sum += p.z[c] * p.z[c];
          T* dj = acc.data() + j * d;
          for (int64_t c = 0; c < d; ++c) dj[c] += p.s * p.z[c];
          ++cnt[j];
          if (!sc.directed && i != j) {
            T* di = acc.data() + i * d;
            for (int64_t c = 0; c < d; ++c) di[c] += p.s * p.z[c];
            ++cnt[i];
          }
        }
      }
      T* out = pooled + g * d;
      std::fill(out, out + d, T(0));
      for (int64_t t = 0; t < k; ++t) {
        if (cnt[t] == 0) continue;
        const T inv = T(1) / T(cnt[t]);
        for (int64_t c = 0; c < d; ++c) out[c] += acc[t * d + c] * inv;
      }
      if (k > 0)
        for (int64_t c = 0; c < d; ++c) out[c] /= T(k);
      l0[g] = m.gated ? l0_sum : T(0);
      l2[g] = l2_sum;
      kept[g] = kept_sum;
    }
  }
}

template <typename T, typename S>
void backward_impl(const int64_t* ptr, const int64_t* nodes, const int64_t* pair_ptr, int64_t num_graphs,
                   const Model<T>& m, const Scalars& sc, const int32_t* counts, const T* g_pooled,
                   const T* g_l0, const T* g_l2, T* g_pos, T* g_epos, std::vector<T>& g_weights) {
  const T tau = T(sc.tau), gamma = T(sc.gamma), zeta = T(sc.zeta), shift = T(sc.shift);
  const int64_t d = width<S::D>(m.d), b = width<S::B>(m.b), H = width<S::H>(m.hidden),
                Hg = width<S::G>(m.g_hidden);
  // Weight-gradient layout: W1^T [d, H], b1, W2^T [H, d], b2, W1g^T [b, Hg], b1g, w2g, b2g.
  const int64_t o_b1 = d * H, o_w2 = o_b1 + H, o_b2 = o_w2 + H * d, o_gw1 = o_b2 + d;
  const int64_t o_gb1 = o_gw1 + b * Hg, o_gw2 = o_gb1 + Hg, o_gb2 = o_gw2 + Hg, size = o_gb2 + 1;
  const int threads = omp_get_max_threads();
  std::vector<std::vector<T>> partial(threads);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T>& acc = partial[omp_get_thread_num()];
    acc.assign(size, T(0));
    Pair<T, S> p(m);
    std::vector<T> gz(d), dhpre(H), dre(Hg);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < num_graphs; ++g) {
      const int64_t base = ptr[g], k = ptr[g + 1] - base;
      T* du = g_pos + base * d;
      std::fill(du, du + k * d, T(0));
      T* de = m.gated ? g_epos + base * b : nullptr;
      if (de) std::fill(de, de + k * b, T(0));
      if (k == 0) continue;
      const T* G = g_pooled + g * d;
      const T gl0 = m.gated ? g_l0[g] : T(0), gl2 = g_l2[g], inv_k = T(1) / T(k);
      int64_t q = 0;
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = i; j < k; ++j, ++q) {
          const int64_t fi = nodes[base + i], fj = nodes[base + j];
          p.gate(m, fi, fj, sc.kind, sc.seed, sc.offset + static_cast<uint64_t>(pair_ptr[g] + q), tau, gamma,
                 zeta, shift);
          const bool kept = p.s > T(0);
          T gz_dot = T(0), w = T(0);
          if (kept) {
            // w: d pooled / d message of this pair, summed over the nodes it is delivered to.
            w = inv_k / T(counts[base + j]);
            if (!sc.directed && i != j) w += inv_k / T(counts[base + i]);
            p.interact(m, fi, fj);
            for (int64_t c = 0; c < d; ++c) {
              gz_dot += G[c] * p.z[c];
              gz[c] = p.s * w * G[c] + T(2) * gl2 * p.z[c];
            }
            // h backward: W2, b2, then through the ReLU into W1, b1 and a = u_i * u_j.
            T* __restrict dh = dhpre.data();
            for (int64_t h = 0; h < H; ++h) dh[h] = T(0);
            for (int64_t c = 0; c < d; ++c) {  // W2^T gz as a sum of W2's rows
              const T gc = gz[c];
              const T* row = m.w2 + c * H;
              for (int64_t h = 0; h < H; ++h) dh[h] += row[h] * gc;
            }
            for (int64_t h = 0; h < H; ++h) {
              T* grow = acc.data() + o_w2 + h * d;
              for (int64_t c = 0; c < d; ++c) grow[c] += p.r[h] * gz[c];
              if (!(p.hpre[h] > T(0))) dh[h] = T(0);
            }
            for (int64_t c = 0; c < d; ++c) acc[o_b2 + c] += gz[c];
            for (int64_t h = 0; h < H; ++h) acc[o_b1 + h] += dhpre[h];
            product_layer_backward<S::D, S::H>(p.a.data(), d, m.w1, dhpre.data(), H, acc.data(),
                                   m.node_emb + fi * d, m.node_emb + fj * d, du + i * d, du + j * d);
          }
          if (!m.gated) continue;
          // gate backward: ds/dlogit and the L0 term, then the gate MLP and the edge rows.
          const T gl = p.ds * w * gz_dot + gl0 * p.pi * (T(1) - p.pi);
          if (gl == T(0)) continue;
          acc[o_gb2] += gl;
          for (int64_t h = 0; h < Hg; ++h) {
            acc[o_gw2 + h] += gl * p.re[h];
            dre[h] = p.epre[h] > T(0) ? gl * m.gw2[h] : T(0);
            acc[o_gb1 + h] += dre[h];
          }
          product_layer_backward<S::B, S::G>(p.ae.data(), b, m.gw1, dre.data(), Hg, acc.data() + o_gw1,
                                 m.edge_emb + fi * b, m.edge_emb + fj * b, de + i * b, de + j * b);
        }
      }
    }
  }
  g_weights.assign(size, T(0));
  for (const auto& acc : partial)  // a thread the runtime did not start has no buffer
    for (size_t n = 0; n < acc.size(); ++n) g_weights[n] += acc[n];
}

void check_inputs(const Tensor& ptr, const Tensor& nodes, const Tensor& pair_ptr,
                  const std::vector<Tensor>& t) {
  TORCH_CHECK(t.size() == 10, "all_pairs (cpu): expected 10 tensors");
  for (const Tensor* x : {&ptr, &nodes, &pair_ptr}) {
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == at::kLong && x->is_contiguous(),
                "all_pairs (cpu): ptr, nodes, pair_ptr must be contiguous int64 CPU tensors");
  }
  for (const auto& x : t) {
    TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.scalar_type() == t[0].scalar_type(),
                "all_pairs (cpu): the float tensors must be contiguous CPU tensors of one dtype");
  }
}

template <typename T>
bool paper_sizes(const Model<T>& m) {
  return m.d == PaperSizes::D && m.hidden == PaperSizes::H &&
         (!m.gated || (m.b == PaperSizes::B && m.g_hidden == PaperSizes::G));
}

Scalars scalars(int64_t kind, int64_t seed, int64_t offset, double tau, double gamma, double zeta,
                double shift, bool directed) {
  TORCH_CHECK(kind >= -1 && kind <= HARD_CONCRETE_MEAN, "all_pairs (cpu): unknown gate kind ", kind);
  return {static_cast<int>(kind), static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), tau, gamma,
          zeta, shift, directed};
}

}  // namespace

std::vector<Tensor> all_pairs_forward(const Tensor& ptr, const Tensor& nodes, const Tensor& pair_ptr,
                                      const std::vector<Tensor>& tensors, int64_t kind, int64_t seed,
                                      int64_t offset, double tau, double gamma, double zeta, double shift,
                                      bool directed) {
  check_inputs(ptr, nodes, pair_ptr, tensors);
  const Scalars sc = scalars(kind, seed, offset, tau, gamma, zeta, shift, directed);
  const int64_t num_graphs = ptr.size(0) - 1;
  const auto& emb = tensors[0];
  auto pooled = torch::empty({num_graphs, emb.size(1)}, emb.options());
  auto l0 = torch::empty({num_graphs}, emb.options());
  auto l2 = torch::empty({num_graphs}, emb.options());
  auto kept = torch::empty({num_graphs}, ptr.options());
  auto counts = torch::empty({nodes.size(0)}, ptr.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(emb.scalar_type(), "all_pairs_forward_cpu", [&] {
    const Model<scalar_t> m(tensors, kind >= 0);
    auto run = [&](auto sizes) {
      forward_impl<scalar_t, decltype(sizes)>(
          ptr.data_ptr<int64_t>(), nodes.data_ptr<int64_t>(), pair_ptr.data_ptr<int64_t>(), num_graphs, m, sc,
          pooled.data_ptr<scalar_t>(), l0.data_ptr<scalar_t>(), l2.data_ptr<scalar_t>(), kept.data_ptr<int64_t>(),
          counts.data_ptr<int32_t>());
    };
    if (paper_sizes(m)) run(PaperSizes{}); else run(RuntimeSizes{});
  });
  return {pooled, l0, l2, kept, counts};
}

std::vector<Tensor> all_pairs_backward(const Tensor& ptr, const Tensor& nodes, const Tensor& pair_ptr,
                                       const std::vector<Tensor>& tensors, int64_t kind, int64_t seed,
                                       int64_t offset, double tau, double gamma, double zeta, double shift,
                                       bool directed, const Tensor& counts, const Tensor& g_pooled,
                                       const Tensor& g_l0, const Tensor& g_l2) {
  check_inputs(ptr, nodes, pair_ptr, tensors);
  const Scalars sc = scalars(kind, seed, offset, tau, gamma, zeta, shift, directed);
  const int64_t num_graphs = ptr.size(0) - 1;
  const auto& emb = tensors[0];
  for (const Tensor* x : {&g_pooled, &g_l0, &g_l2})
    TORCH_CHECK(x->is_contiguous() && x->scalar_type() == emb.scalar_type(),
                "all_pairs (cpu): output gradients must be contiguous, in the embeddings' dtype");
  TORCH_CHECK(counts.scalar_type() == at::kInt && counts.numel() == nodes.numel(),
              "all_pairs (cpu): counts must be int32 [N] from forward");
  auto g_pos = torch::empty({nodes.size(0), emb.size(1)}, emb.options());
  auto g_epos = torch::zeros({nodes.size(0), tensors[1].size(1)}, emb.options());
  std::vector<Tensor> out{g_pos, g_epos};
  AT_DISPATCH_FLOATING_TYPES(emb.scalar_type(), "all_pairs_backward_cpu", [&] {
    const Model<scalar_t> m(tensors, kind >= 0);
    std::vector<scalar_t> gw;
    auto run = [&](auto sizes) {
      backward_impl<scalar_t, decltype(sizes)>(
          ptr.data_ptr<int64_t>(), nodes.data_ptr<int64_t>(), pair_ptr.data_ptr<int64_t>(), num_graphs, m, sc,
          counts.data_ptr<int32_t>(), g_pooled.data_ptr<scalar_t>(), g_l0.data_ptr<scalar_t>(),
          g_l2.data_ptr<scalar_t>(), g_pos.data_ptr<scalar_t>(), g_epos.data_ptr<scalar_t>(), gw);
    };
    if (paper_sizes(m)) run(PaperSizes{}); else run(RuntimeSizes{});
    // Back from the transposed layouts into nn.Linear's [out, in].
    const int64_t d = m.d, b = m.b, H = m.hidden, Hg = m.g_hidden;
    auto opts = emb.options();
    auto from = [&](int64_t at, std::vector<int64_t> shape) {
      return torch::from_blob(gw.data() + at, shape, opts).clone();
    };
    const int64_t o_b1 = d * H, o_w2 = o_b1 + H, o_b2 = o_w2 + H * d, o_gw1 = o_b2 + d;
    const int64_t o_gb1 = o_gw1 + b * Hg, o_gw2 = o_gb1 + Hg, o_gb2 = o_gw2 + Hg;
    out.push_back(from(0, {d, H}).t().contiguous());      // W1 [H, d]
    out.push_back(from(o_b1, {H}));
    out.push_back(from(o_w2, {H, d}).t().contiguous());   // W2 [d, H]
    out.push_back(from(o_b2, {d}));
    if (m.gated) {
      out.push_back(from(o_gw1, {b, Hg}).t().contiguous());  // W1g [Hg, b]
      out.push_back(from(o_gb1, {Hg}));
      out.push_back(from(o_gw2, {Hg}));
      out.push_back(from(o_gb2, {1}));
    } else {
      for (int n = 6; n < 10; ++n) out.push_back(torch::zeros_like(tensors[n]));
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace fgd
