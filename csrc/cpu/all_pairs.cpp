// CPU (OpenMP) kernels of ops.all_pairs_interaction (L0-SIGN's gated all-pairs pass); semantics in
// fastgcn_denoise/ops/all_pairs.py. Each thread owns a contiguous range of graphs and walks their
// pairs i <= j in counter order, kNB = kPhiloxBlock pairs at a time (a block may span graphs: the
// counters of a thread's pairs are consecutive, from the pair count of the graphs before its range). A block is laid out pair-major in lanes ("lane"
// = one pair; every array below is [rows][lanes]), so that each MLP layer is a run of vector
// FMAs across pairs with the weights broadcast, and the gates' exp/log run as one simd loop:
// per pair, the old one-pair-at-a-time loops were chains of dependent FMAs (latency bound) and
// four scalar libm calls. h runs only on the kept pairs of a block, compacted into kNH lanes.
// Backward recomputes the block (uniforms regenerated) from the per-node kept counts saved by
// forward; the weight gradients accumulate in per-thread accumulators of one SIMD register per
// weight (kW lanes: the products of a block's lanes fold into it, so each weight costs one load
// and one store per block), reduced over the lanes and then the threads in order at the end:
// deterministic for a given thread count. The per-position gradients are summed into the tables
// at the end, in position order.
// Every lane of a simd loop runs (pad lanes repeat a real pair), so a pair's gate has the same
// bits in forward and backward wherever its block starts (vector libm rounds as itself).
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu/vector_math.h"  // before gates.h: its exp/log calls vectorise
#include "gates.h"

namespace fgd {
namespace cpu {
namespace {

using torch::Tensor;

constexpr int kNB = kPhiloxBlock;  // pairs per block (the gate lanes)
constexpr int kNH = 32;            // lanes of h (the kept pairs of a block, in one run)

// Widths known at compile time (0: given at run time). The paper's model (d = b = 8, hidden 32)
// runs a specialisation whose loops the compiler unrolls.
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

// The tensors in the op's order (nn.Linear layouts [out, in]).
template <typename T>
struct Model {
  const T *node_emb, *edge_emb;           // [F, d], [F, b]
  const T *w1, *b1, *w2, *b2;             // h: W1 [H, d], b1 [H], W2 [d, H], b2 [d]
  const T *gw1, *gb1, *gw2;               // gate: W1g [Hg, b], b1g [Hg], w2g [Hg]
  T gb2 = T(0);
  int64_t d, b, hidden, g_hidden;
  bool gated;

  Model(const std::vector<Tensor>& t, bool gated_) : gated(gated_) {
    node_emb = t[0].data_ptr<T>();
    edge_emb = t[1].data_ptr<T>();
    w1 = t[2].data_ptr<T>();
    b1 = t[3].data_ptr<T>();
    w2 = t[4].data_ptr<T>();
    b2 = t[5].data_ptr<T>();
    d = t[0].size(1);
    b = t[1].size(1);
    hidden = t[2].size(0);
    g_hidden = gated ? t[6].size(0) : 0;
    gw1 = t[6].data_ptr<T>();
    gb1 = t[7].data_ptr<T>();
    gw2 = t[8].data_ptr<T>();
    if (gated) gb2 = t[9].data_ptr<T>()[0];
  }
};

// L lanes of T as one GCC vector (explicit, so that every lane op is whole SIMD registers whatever
// the auto-vectoriser makes of the loops), loaded from and stored to unaligned T arrays.
template <typename T, int L>
struct LaneType {
  typedef T V __attribute__((vector_size(sizeof(T) * L), aligned(sizeof(T)), may_alias));
};
template <typename T, int L>
using Vec = typename LaneType<T, L>::V;

template <int L, typename T>
inline Vec<T, L> load(const T* p) {
  return *reinterpret_cast<const Vec<T, L>*>(p);
}
template <int L, typename T>
inline void store(T* p, Vec<T, L> v) {
  *reinterpret_cast<Vec<T, L>*>(p) = v;
}

// Lanes per vector in the products below: 64 bytes, one AVX-512 register (two AVX2 ones). A wider
// GCC vector would be lowered through the stack.
template <typename T>
constexpr int kW = 64 / sizeof(T);

// out[o][p] = bias[o] + sum_i w[o, i] in[i][p] (bias may be null: 0), for L lanes p.
template <int L, int NI, int NO, typename T>
inline void lanes_linear(const T* __restrict w, const T* __restrict bias, const T* __restrict in,
                         int64_t ni_, int64_t no_, T* __restrict out) {
  constexpr int W = kW<T>;
  const int64_t ni = width<NI>(ni_), no = width<NO>(no_);
  for (int64_t o = 0; o < no; ++o)
    for (int c = 0; c < L; c += W) {
      Vec<T, W> acc = Vec<T, W>{} + (bias ? bias[o] : T(0));
      for (int64_t i = 0; i < ni; ++i) acc += w[o * ni + i] * load<W>(in + i * L + c);
      store<W>(out + o * L + c, acc);
    }
}

// out[i][p] = sum_o w[o, i] in[o][p] (W^T across the lanes), for L lanes p.
template <int L, int NI, int NO, typename T>
inline void lanes_linear_t(const T* __restrict w, const T* __restrict in, int64_t ni_, int64_t no_,
                           T* __restrict out) {
  constexpr int W = kW<T>;
  const int64_t ni = width<NI>(ni_), no = width<NO>(no_);
  for (int64_t i = 0; i < ni; ++i)
    for (int c = 0; c < L; c += W) {
      Vec<T, W> acc = Vec<T, W>{};
      for (int64_t o = 0; o < no; ++o) acc += w[o * ni + i] * load<W>(in + o * L + c);
      store<W>(out + i * L + c, acc);
    }
}

// acc[o, i][l] += sum over the lanes p = l (mod kW) of a[o][p] c[i][p]: the weight gradient
// sum_p a_p c_p^T ([no, ni], nn.Linear layout) in kW-lane partial sums. Rows of a are held in
// registers kOT at a time, so that each c row is loaded once per kOT outputs.
template <int L, int NI, int NO, typename T>
inline void lanes_outer_acc(T* __restrict acc, const T* __restrict a, const T* __restrict c,
                            int64_t ni_, int64_t no_) {
  constexpr int W = kW<T>, C = L / W, kOT = 4;
  static_assert(L % W == 0, "lanes must fill whole registers");
  const int64_t ni = width<NI>(ni_), no = width<NO>(no_);
  int64_t o = 0;
  for (; o + kOT <= no; o += kOT) {
    Vec<T, W> ar[kOT][C];
    for (int t = 0; t < kOT; ++t)
      for (int q = 0; q < C; ++q) ar[t][q] = load<W>(a + (o + t) * L + q * W);
    for (int64_t i = 0; i < ni; ++i) {
      Vec<T, W> cr[C];
      for (int q = 0; q < C; ++q) cr[q] = load<W>(c + i * L + q * W);
      for (int t = 0; t < kOT; ++t) {
        T* dst = acc + ((o + t) * ni + i) * W;
        Vec<T, W> s = load<W>(dst);
        for (int q = 0; q < C; ++q) s += ar[t][q] * cr[q];
        store<W>(dst, s);
      }
    }
  }
  for (; o < no; ++o)
    for (int64_t i = 0; i < ni; ++i) {
      T* dst = acc + (o * ni + i) * W;
      Vec<T, W> s = load<W>(dst);
      for (int q = 0; q < C; ++q) s += load<W>(a + o * L + q * W) * load<W>(c + i * L + q * W);
      store<W>(dst, s);
    }
}

// acc[o][l] += sum over the lanes p = l (mod kW) of a[o][p] (a bias gradient).
template <int L, typename T>
inline void lanes_sum_acc(T* __restrict acc, const T* __restrict a, int64_t no) {
  constexpr int W = kW<T>;
  for (int64_t o = 0; o < no; ++o) {
    Vec<T, W> s = load<W>(acc + o * W);
    for (int q = 0; q < L / W; ++q) s += load<W>(a + o * L + q * W);
    store<W>(acc + o * W, s);
  }
}

// rows[t][p] = x[fa[p], t] * x[fb[p], t]: the pair products of L lanes from a table [F, n].
template <int L, int N, typename T>
inline void lanes_products(const T* __restrict x, const int64_t* fa, const int64_t* fb, int64_t n_,
                           T* __restrict rows) {
  const int64_t n = width<N>(n_);
  for (int p = 0; p < L; ++p) {
    const T* xa = x + fa[p] * n;
    const T* xb = x + fb[p] * n;
    for (int64_t t = 0; t < n; ++t) rows[t * L + p] = xa[t] * xb[t];
  }
}

struct Scalars {
  int kind;
  uint64_t seed, offset;
  double tau, gamma, zeta, shift;
  bool directed;
};

// The pairs of one block: graph, node positions (global), features and the first pair's counter.
struct PairBlock {
  int64_t graph[kNB], pos_i[kNB], pos_j[kNB], f_i[kNB], f_j[kNB];
  int n = 0;
  uint64_t first = 0;
};

// Counter of graph g0's first pair: the pairs k(k+1)/2 of the graphs before it.
inline uint64_t pairs_before(const int64_t* ptr, int64_t g0) {
  uint64_t n = 0;
  for (int64_t g = 0; g < g0; ++g) {
    const uint64_t k = static_cast<uint64_t>(ptr[g + 1] - ptr[g]);
    n += k * (k + 1) / 2;
  }
  return n;
}

// Walks the pairs of graphs [g0, g1) in counter order (the first one's counter offset + the pairs
// before g0) and calls run(block) for every full block and the last partial one. Pad lanes repeat
// the block's first pair (their results are ignored).
template <typename F>
void for_each_block(const int64_t* ptr, const int64_t* nodes, int64_t g0, int64_t g1,
                    uint64_t offset, PairBlock& blk, F&& run) {
  blk.n = 0;
  auto flush = [&] {
    for (int p = blk.n; p < kNB; ++p) {
      blk.graph[p] = blk.graph[0];
      blk.pos_i[p] = blk.pos_i[0];
      blk.pos_j[p] = blk.pos_j[0];
      blk.f_i[p] = blk.f_i[0];
      blk.f_j[p] = blk.f_j[0];
    }
    run(blk);
    blk.n = 0;
  };
  uint64_t counter = offset + pairs_before(ptr, g0);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t base = ptr[g], k = ptr[g + 1] - base;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i; j < k; ++j, ++counter) {
        if (blk.n == 0) blk.first = counter;
        const int p = blk.n++;
        blk.graph[p] = g;
        blk.pos_i[p] = base + i;
        blk.pos_j[p] = base + j;
        blk.f_i[p] = nodes[base + i];
        blk.f_j[p] = nodes[base + j];
        if (blk.n == kNB) flush();
      }
  }
  if (blk.n > 0) flush();
}

// Per-thread scratch of the lane arrays (the widths are the model's).
template <typename T>
struct Lanes {
  std::vector<T> ae, epre, logit, s, ds, pi;  // gate: [b][kNB], [Hg][kNB], [kNB] x 4
  std::vector<T> a, hpre, r, z;               // h: [d][kNH], [H][kNH] x 2, [d][kNH]
  int kept[kNB];
  int num_kept = 0;
  explicit Lanes(const Model<T>& m)
      : ae(m.b * kNB), epre(m.g_hidden * kNB), logit(kNB), s(kNB), ds(kNB), pi(kNB),
        a(m.d * kNH), hpre(m.hidden * kNH), r(m.hidden * kNH), z(m.d * kNH) {}
};

// s, ds/dlogit and P(s != 0) of the kNB lanes from their logits, gate kind kKind (a compile-time
// kind, so that the loop is branch-free and its exp/log calls vectorise).
template <int kKind, typename T>
inline void gate_lanes(const Scalars& sc, const float* u, Lanes<T>& ln) {
  const T tau = T(sc.tau), gamma = T(sc.gamma), zeta = T(sc.zeta), shift = T(sc.shift);
  const T* __restrict lg = ln.logit.data();
  T* __restrict s = ln.s.data();
  T* __restrict ds = ln.ds.data();
  T* __restrict pi = ln.pi.data();
#pragma omp simd
  for (int p = 0; p < kNB; ++p) {
    const GateValue<T> g = gate_eval<T>(kKind, lg[p], u[p], tau, gamma, zeta);
    s[p] = g.z;
    ds[p] = g.dz;
    pi[p] = T(1) / (T(1) + std::exp(-(lg[p] + shift)));
  }
}

// The gates of a block (s = 1 without edge prediction) and the compacted list of its kept pairs.
template <typename T, typename S>
void block_gates(const Model<T>& m, const Scalars& sc, const PairBlock& blk, Lanes<T>& ln) {
  if (!m.gated) {
    for (int p = 0; p < kNB; ++p) {
      ln.s[p] = T(1);
      ln.ds[p] = ln.pi[p] = T(0);
    }
  } else {
    const int64_t b = width<S::B>(m.b), Hg = width<S::G>(m.g_hidden);
    lanes_products<kNB, S::B>(m.edge_emb, blk.f_i, blk.f_j, b, ln.ae.data());
    lanes_linear<kNB, S::B, S::G>(m.gw1, m.gb1, ln.ae.data(), b, Hg, ln.epre.data());
    T* __restrict lg = ln.logit.data();
    for (int p = 0; p < kNB; ++p) lg[p] = m.gb2;
    for (int64_t h = 0; h < Hg; ++h) {
      const T w = m.gw2[h];
      const T* e = ln.epre.data() + h * kNB;
      for (int p = 0; p < kNB; ++p) lg[p] += w * (e[p] > T(0) ? e[p] : T(0));
    }
    float u[kNB] = {0};
    if (gate_needs_uniform(sc.kind)) philox_uniform_block(sc.seed, blk.first, u);
    switch (sc.kind) {
      case CONCRETE: gate_lanes<CONCRETE>(sc, u, ln); break;
      case HARD_CONCRETE: gate_lanes<HARD_CONCRETE>(sc, u, ln); break;
      default: gate_lanes<HARD_CONCRETE_MEAN>(sc, u, ln); break;
    }
  }
  ln.num_kept = 0;
  for (int p = 0; p < blk.n; ++p)
    if (ln.s[p] > T(0)) ln.kept[ln.num_kept++] = p;
}

// h on the kept pairs kept[r0 .. r0 + kNH) of the block (pad lanes repeat kept[r0]):
// a = u_i * u_j, hpre, r = relu(hpre), z.
template <typename T, typename S>
void run_h(const Model<T>& m, const PairBlock& blk, Lanes<T>& ln, int r0) {
  const int64_t d = width<S::D>(m.d), H = width<S::H>(m.hidden);
  int64_t fa[kNH], fb[kNH];
  for (int q = 0; q < kNH; ++q) {
    const int p = ln.kept[r0 + q < ln.num_kept ? r0 + q : r0];
    fa[q] = blk.f_i[p];
    fb[q] = blk.f_j[p];
  }
  lanes_products<kNH, S::D>(m.node_emb, fa, fb, d, ln.a.data());
  lanes_linear<kNH, S::D, S::H>(m.w1, m.b1, ln.a.data(), d, H, ln.hpre.data());
  const T* __restrict hp = ln.hpre.data();
  T* __restrict r = ln.r.data();
  for (int64_t n = 0; n < H * kNH; ++n) r[n] = hp[n] > T(0) ? hp[n] : T(0);
  lanes_linear<kNH, S::H, S::D>(m.w2, m.b2, ln.r.data(), H, d, ln.z.data());
}

// Graphs [g0, g1) of thread t of nt (contiguous, balanced by count).
inline void thread_range(int64_t num_graphs, int t, int nt, int64_t* g0, int64_t* g1) {
  *g0 = num_graphs * t / nt;
  *g1 = num_graphs * (t + 1) / nt;
}

template <typename T, typename S>
void forward_impl(const int64_t* ptr, const int64_t* nodes, int64_t num_graphs,
                  const Model<T>& m, const Scalars& sc, T* pooled, T* l0, T* l2, int64_t* kept,
                  int32_t* counts, T* agg) {
  const int64_t d = width<S::D>(m.d);
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t g0, g1;
    thread_range(num_graphs, t, nt, &g0, &g1);
    const int64_t n0 = ptr[g0], n1 = ptr[g1];
    std::fill(agg + n0 * d, agg + n1 * d, T(0));
    std::fill(counts + n0, counts + n1, 0);
    std::fill(l0 + g0, l0 + g1, T(0));
    std::fill(l2 + g0, l2 + g1, T(0));
    std::fill(kept + g0, kept + g1, int64_t(0));
    Lanes<T> ln(m);
    PairBlock blk;
    for_each_block(ptr, nodes, g0, g1, sc.offset, blk, [&](const PairBlock& bk) {
      block_gates<T, S>(m, sc, bk, ln);
      if (m.gated)
        for (int p = 0; p < bk.n; ++p) l0[bk.graph[p]] += ln.pi[p];
      for (int r0 = 0; r0 < ln.num_kept; r0 += kNH) {
        run_h<T, S>(m, bk, ln, r0);
        const int count = std::min(kNH, ln.num_kept - r0);
        for (int q = 0; q < count; ++q) {
          const int p = ln.kept[r0 + q];
          const int64_t g = bk.graph[p], pi = bk.pos_i[p], pj = bk.pos_j[p];
          const T s = ln.s[p];
          T sq = T(0);
          T* dj = agg + pj * d;
          for (int64_t c = 0; c < d; ++c) {
            const T zc = ln.z[c * kNH + q];
            sq += zc * zc;
            dj[c] += s * zc;
          }
          ++counts[pj];
          if (!sc.directed && pi != pj) {
            T* di = agg + pi * d;
            for (int64_t c = 0; c < d; ++c) di[c] += s * ln.z[c * kNH + q];
            ++counts[pi];
          }
          l2[g] += sq;
          ++kept[g];
        }
      }
    });
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t base = ptr[g], k = ptr[g + 1] - base;
      T* out = pooled + g * d;
      std::fill(out, out + d, T(0));
      for (int64_t n = base; n < base + k; ++n) {
        if (counts[n] == 0) continue;
        const T inv = T(1) / T(counts[n]);
        for (int64_t c = 0; c < d; ++c) out[c] += agg[n * d + c] * inv;
      }
      if (k > 0)
        for (int64_t c = 0; c < d; ++c) out[c] /= T(k);
    }
  }
}

// Lanes 0, 1, ... (the gate's lanes are the block's pairs in order).
constexpr int kIdentity[kNB] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static_assert(kNB == 32, "kIdentity lists the kNB lanes");

// The gradient of a = x_i * x_j into the per-position rows: out[pos_i] += ga x_j and
// out[pos_j] += ga x_i, for the lanes q < count (pair lane[q] of the block; ga [n][L] lane-major).
// Consecutive pairs of a row share i (counter order), so out[pos_i] is summed in registers over
// a run of them and written once per run.
template <typename T, int N>
inline void scatter_pair_rows(const T* __restrict x, const PairBlock& bk, const int* lane, int count,
                              const T* __restrict ga, int L, int64_t n_, T* __restrict out) {
  constexpr int kMax = N ? N : 64;  // a run's sum in registers up to this width
  const int64_t n = width<N>(n_);
  T acc[kMax];
  int64_t run = -1;
  const T* xi = nullptr;
  if (n > kMax) {
    for (int q = 0; q < count; ++q) {
      const int p = lane[q];
      const T* xa = x + bk.f_i[p] * n;
      const T* xb = x + bk.f_j[p] * n;
      T* gi = out + bk.pos_i[p] * n;
      T* gj = out + bk.pos_j[p] * n;
      for (int64_t c = 0; c < n; ++c) {
        gi[c] += ga[c * L + q] * xb[c];
        gj[c] += ga[c * L + q] * xa[c];
      }
    }
    return;
  }
  for (int q = 0; q < count; ++q) {
    const int p = lane[q];
    if (bk.pos_i[p] != run) {
      if (run >= 0)
        for (int64_t c = 0; c < n; ++c) out[run * n + c] += acc[c];
      run = bk.pos_i[p];
      xi = x + bk.f_i[p] * n;
      for (int64_t c = 0; c < n; ++c) acc[c] = T(0);
    }
    const T* xj = x + bk.f_j[p] * n;
    T* gj = out + bk.pos_j[p] * n;
    for (int64_t c = 0; c < n; ++c) {
      const T g = ga[c * L + q];
      acc[c] += g * xj[c];
      gj[c] += g * xi[c];
    }
  }
  if (run >= 0)
    for (int64_t c = 0; c < n; ++c) out[run * n + c] += acc[c];
}

// Offsets of the weight gradients (nn.Linear layouts) in the flat accumulator, in kW-lane units.
struct GradLayout {
  int64_t w1, b1, w2, b2, gw1, gb1, gw2, gb2, size;
  GradLayout(int64_t d, int64_t b, int64_t H, int64_t Hg) {
    w1 = 0;
    b1 = w1 + H * d;
    w2 = b1 + H;
    b2 = w2 + d * H;
    gw1 = b2 + d;
    gb1 = gw1 + Hg * b;
    gw2 = gb1 + Hg;
    gb2 = gw2 + Hg;
    size = gb2 + 1;
  }
};

template <typename T, typename S>
void backward_impl(const int64_t* ptr, const int64_t* nodes, int64_t num_graphs, const Model<T>& m,
                   const Scalars& sc, const int32_t* counts, const T* g_pooled, const T* g_l0,
                   const T* g_l2, T* g_pos, T* g_epos, std::vector<T>& g_weights) {
  constexpr int W = kW<T>;
  const int64_t d = width<S::D>(m.d), b = width<S::B>(m.b), H = width<S::H>(m.hidden),
                Hg = width<S::G>(m.g_hidden);
  const GradLayout o(d, b, H, Hg);
  const int threads = omp_get_max_threads();
  std::vector<std::vector<T>> partial(threads);
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    std::vector<T>& acc = partial[t];
    acc.assign(o.size * W, T(0));
    T* A = acc.data();
    int64_t g0, g1;
    thread_range(num_graphs, t, nt, &g0, &g1);
    const int64_t n0 = ptr[g0], n1 = ptr[g1];
    std::fill(g_pos + n0 * d, g_pos + n1 * d, T(0));
    if (m.gated) std::fill(g_epos + n0 * b, g_epos + n1 * b, T(0));
    // d pooled / d (message into node n) = 1 / (k count_n), the mean over its kept pairs and then
    // over the graph's nodes (0 where nothing is kept: no kept pair delivers there).
    std::vector<T> w_node(n1 - n0);
    for (int64_t g = g0; g < g1; ++g) {
      const T inv_k = T(1) / T(ptr[g + 1] - ptr[g]);
      for (int64_t n = ptr[g]; n < ptr[g + 1]; ++n)
        w_node[n - n0] = counts[n] ? inv_k / T(counts[n]) : T(0);
    }
    Lanes<T> ln(m);
    PairBlock blk;
    // Per lane: w = d pooled / d message summed over the ends, <G, z>, and h's backward rows.
    std::vector<T> w(kNB), gz_dot(kNB), gz(d * kNH), dh(H * kNH), da(d * kNH), gl(kNB),
        dre(Hg * kNB), re(Hg * kNB), dae(b * kNB);
    T sw[kNH], g2[kNH], wl[kNH], dot[kNH];
    int64_t grow[kNH];
    for_each_block(ptr, nodes, g0, g1, sc.offset, blk, [&](const PairBlock& bk) {
      block_gates<T, S>(m, sc, bk, ln);
      std::fill(w.begin(), w.end(), T(0));
      std::fill(gz_dot.begin(), gz_dot.end(), T(0));
      for (int r0 = 0; r0 < ln.num_kept; r0 += kNH) {
        run_h<T, S>(m, bk, ln, r0);
        const int count = std::min(kNH, ln.num_kept - r0);
        // Per lane its weight, s w, 2 g_l2 and its graph's row of g_pooled (pad lanes: 0 weights).
        for (int q = 0; q < kNH; ++q) {
          const bool valid = q < count;
          const int p = ln.kept[valid ? r0 + q : r0];
          const int64_t g = bk.graph[p], pi = bk.pos_i[p], pj = bk.pos_j[p];
          T wp = w_node[pj - n0];
          if (!sc.directed && pi != pj) wp += w_node[pi - n0];
          wl[q] = wp;
          sw[q] = valid ? ln.s[p] * wp : T(0);
          g2[q] = valid ? T(2) * g_l2[g] : T(0);
          grow[q] = g * d;
        }
        // gz = s w G + 2 g_l2 z (0 on the pad lanes) and <G, z>, across the lanes (G gathered
        // per lane: scalar stores read back as vectors would stall on store forwarding).
        for (int q = 0; q < kNH; ++q) dot[q] = T(0);
        for (int64_t c = 0; c < d; ++c) {
          const T* zc = ln.z.data() + c * kNH;
          T* gzc = gz.data() + c * kNH;
#pragma omp simd
          for (int q = 0; q < kNH; ++q) {
            const T G = g_pooled[grow[q] + c];
            dot[q] += G * zc[q];
            gzc[q] = sw[q] * G + g2[q] * zc[q];
          }
        }
        for (int q = 0; q < count; ++q) {
          const int p = ln.kept[r0 + q];
          w[p] = wl[q];
          gz_dot[p] = dot[q];
        }
        // h backward: W2, b2, then through the ReLU into W1, b1 and a = u_i * u_j.
        lanes_sum_acc<kNH>(A + o.b2 * W, gz.data(), d);
        lanes_outer_acc<kNH, S::H, S::D>(A + o.w2 * W, gz.data(), ln.r.data(), H, d);
        lanes_linear_t<kNH, S::H, S::D>(m.w2, gz.data(), H, d, dh.data());
        for (int64_t n = 0; n < H * kNH; ++n)
          if (!(ln.hpre[n] > T(0))) dh[n] = T(0);
        lanes_sum_acc<kNH>(A + o.b1 * W, dh.data(), H);
        lanes_outer_acc<kNH, S::D, S::H>(A + o.w1 * W, dh.data(), ln.a.data(), d, H);
        lanes_linear_t<kNH, S::D, S::H>(m.w1, dh.data(), d, H, da.data());
        scatter_pair_rows<T, S::D>(m.node_emb, bk, ln.kept + r0, count, da.data(), kNH, d, g_pos);
      }
      if (!m.gated) return;
      // gate backward: ds/dlogit and the L0 term (pad lanes 0), then the gate MLP and edge rows.
      for (int p = 0; p < kNB; ++p) {
        const T gl0 = g_l0[bk.graph[p]];
        gl[p] = p < bk.n ? ln.ds[p] * w[p] * gz_dot[p] + gl0 * ln.pi[p] * (T(1) - ln.pi[p]) : T(0);
      }
      for (int64_t n = 0; n < Hg * kNB; ++n) {
        const T e = ln.epre[n];
        re[n] = e > T(0) ? e : T(0);
      }
      for (int64_t h = 0; h < Hg; ++h) {
        const T wg = m.gw2[h];
        for (int p = 0; p < kNB; ++p) {
          const int64_t n = h * kNB + p;
          dre[n] = ln.epre[n] > T(0) ? gl[p] * wg : T(0);
        }
      }
      lanes_sum_acc<kNB>(A + o.gb2 * W, gl.data(), 1);
      lanes_outer_acc<kNB, S::G, 1>(A + o.gw2 * W, gl.data(), re.data(), Hg, 1);
      lanes_sum_acc<kNB>(A + o.gb1 * W, dre.data(), Hg);
      lanes_outer_acc<kNB, S::B, S::G>(A + o.gw1 * W, dre.data(), ln.ae.data(), b, Hg);
      lanes_linear_t<kNB, S::B, S::G>(m.gw1, dre.data(), b, Hg, dae.data());
      scatter_pair_rows<T, S::B>(m.edge_emb, bk, kIdentity, bk.n, dae.data(), kNB, b, g_epos);
    });
  }
  g_weights.assign(o.size, T(0));
  for (const auto& acc : partial)  // a thread the runtime did not start has no buffer
    for (size_t n = 0; n < acc.size(); ++n) g_weights[n / W] += acc[n];
}

// table[nodes[n]] += rows[n] for every position n in order: the gradient of a table lookup.
template <typename T>
void scatter_rows(const int64_t* nodes, int64_t num_nodes, const T* rows, int64_t width, T* table) {
  for (int64_t n = 0; n < num_nodes; ++n) {
    T* dst = table + nodes[n] * width;
    const T* src = rows + n * width;
    for (int64_t c = 0; c < width; ++c) dst[c] += src[c];
  }
}

void check_inputs(const Tensor& ptr, const Tensor& nodes, const std::vector<Tensor>& t) {
  TORCH_CHECK(t.size() == 10, "all_pairs (cpu): expected 10 tensors");
  for (const Tensor* x : {&ptr, &nodes}) {
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == at::kLong && x->is_contiguous(),
                "all_pairs (cpu): ptr and nodes must be contiguous int64 CPU tensors");
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
  TORCH_CHECK(kind >= -1 && kind <= HARD_CONCRETE_MEAN && kind != CONCRETE_ST,
              "all_pairs (cpu): unknown gate kind ", kind, " (concrete_st needs h of dropped pairs)");
  return {static_cast<int>(kind), static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), tau, gamma,
          zeta, shift, directed};
}

}  // namespace

std::vector<Tensor> all_pairs_forward(const Tensor& ptr, const Tensor& nodes,
                                      const std::vector<Tensor>& tensors, int64_t kind, int64_t seed,
                                      int64_t offset, double tau, double gamma, double zeta, double shift,
                                      bool directed) {
  check_inputs(ptr, nodes, tensors);
  const Scalars sc = scalars(kind, seed, offset, tau, gamma, zeta, shift, directed);
  const int64_t num_graphs = ptr.size(0) - 1;
  const auto& emb = tensors[0];
  auto pooled = torch::empty({num_graphs, emb.size(1)}, emb.options());
  auto l0 = torch::empty({num_graphs}, emb.options());
  auto l2 = torch::empty({num_graphs}, emb.options());
  auto kept = torch::empty({num_graphs}, ptr.options());
  auto counts = torch::empty({nodes.size(0)}, ptr.options().dtype(at::kInt));
  auto agg = torch::empty({nodes.size(0), emb.size(1)}, emb.options());  // sum of s z per node
  AT_DISPATCH_FLOATING_TYPES(emb.scalar_type(), "all_pairs_forward_cpu", [&] {
    const Model<scalar_t> m(tensors, kind >= 0);
    auto run = [&](auto sizes) {
      forward_impl<scalar_t, decltype(sizes)>(
          ptr.data_ptr<int64_t>(), nodes.data_ptr<int64_t>(), num_graphs, m, sc,
          pooled.data_ptr<scalar_t>(), l0.data_ptr<scalar_t>(), l2.data_ptr<scalar_t>(), kept.data_ptr<int64_t>(),
          counts.data_ptr<int32_t>(), agg.data_ptr<scalar_t>());
    };
    if (paper_sizes(m)) run(PaperSizes{}); else run(RuntimeSizes{});
  });
  return {pooled, l0, l2, kept, counts};
}

// Returns the gradients of the ten tensors: node_emb [F, d], edge_emb [F, b] (the per-position
// ones summed into the tables), then the eight weights (zeros for the gate's without one).
std::vector<Tensor> all_pairs_backward(const Tensor& ptr, const Tensor& nodes,
                                       const std::vector<Tensor>& tensors, int64_t kind, int64_t seed,
                                       int64_t offset, double tau, double gamma, double zeta, double shift,
                                       bool directed, const Tensor& counts, const Tensor& g_pooled,
                                       const Tensor& g_l0, const Tensor& g_l2) {
  check_inputs(ptr, nodes, tensors);
  const Scalars sc = scalars(kind, seed, offset, tau, gamma, zeta, shift, directed);
  const int64_t num_graphs = ptr.size(0) - 1, num_nodes = nodes.size(0);
  const auto& emb = tensors[0];
  for (const Tensor* x : {&g_pooled, &g_l0, &g_l2})
    TORCH_CHECK(x->is_contiguous() && x->scalar_type() == emb.scalar_type(),
                "all_pairs (cpu): output gradients must be contiguous, in the embeddings' dtype");
  TORCH_CHECK(counts.scalar_type() == at::kInt && counts.numel() == num_nodes,
              "all_pairs (cpu): counts must be int32 [N] from forward");
  auto g_node = torch::zeros_like(emb);
  auto g_edge = torch::zeros_like(tensors[1]);
  std::vector<Tensor> out{g_node, g_edge};
  AT_DISPATCH_FLOATING_TYPES(emb.scalar_type(), "all_pairs_backward_cpu", [&] {
    const Model<scalar_t> m(tensors, kind >= 0);
    std::vector<scalar_t> gw, g_pos(num_nodes * m.d), g_epos(m.gated ? num_nodes * m.b : 0);
    auto run = [&](auto sizes) {
      backward_impl<scalar_t, decltype(sizes)>(
          ptr.data_ptr<int64_t>(), nodes.data_ptr<int64_t>(), num_graphs, m, sc, counts.data_ptr<int32_t>(),
          g_pooled.data_ptr<scalar_t>(), g_l0.data_ptr<scalar_t>(), g_l2.data_ptr<scalar_t>(), g_pos.data(),
          g_epos.data(), gw);
    };
    if (paper_sizes(m)) run(PaperSizes{}); else run(RuntimeSizes{});
    scatter_rows(nodes.data_ptr<int64_t>(), num_nodes, g_pos.data(), m.d, g_node.data_ptr<scalar_t>());
    if (m.gated)
      scatter_rows(nodes.data_ptr<int64_t>(), num_nodes, g_epos.data(), m.b, g_edge.data_ptr<scalar_t>());
    const GradLayout o(m.d, m.b, m.hidden, m.g_hidden);
    auto opts = emb.options();
    auto from = [&](int64_t at, std::vector<int64_t> shape) {
      return torch::from_blob(gw.data() + at, shape, opts).clone();
    };
    out.push_back(from(o.w1, {m.hidden, m.d}));
    out.push_back(from(o.b1, {m.hidden}));
    out.push_back(from(o.w2, {m.d, m.hidden}));
    out.push_back(from(o.b2, {m.d}));
    if (m.gated) {
      out.push_back(from(o.gw1, {m.g_hidden, m.b}));
      out.push_back(from(o.gb1, {m.g_hidden}));
      out.push_back(from(o.gw2, {m.g_hidden}));
      out.push_back(from(o.gb2, {1}));
    } else {
      for (int n = 6; n < 10; ++n) out.push_back(torch::zeros_like(tensors[n]));
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace fgd
