// CPU (OpenMP) kernels of ops.dot_logsumexp: for a batch of queries q [B, d] against all keys
// k [N, d], lse[b] = log sum_{j in S_b} exp(<q_b, k_j> / tau), tile by tile, never forming the
// [B, N] scores. Semantics: ops/dot_logsumexp.py (reference: materialise, torch.logsumexp).
//
// Forward: one thread owns a block of kRows queries and streams over key tiles of kKeys. A tile's
// scores [kRows x kKeys] come from one GEMM (at::mm_out on the thread's buffer, L2-resident; the
// GEMM runs single-threaded inside the parallel region) and are folded into a running max m and
// sum s per query (online log-sum-exp: s <- s exp(m - m') + sum_j exp(x_j - m'), m' = max(m,
// max_j x_j)), so every exponential has a non-positive argument: no overflow, whatever the
// scale of the scores. Memory: the thread's tile, O(kRows * kKeys), instead of O(B * N).
//
// Backward (g = dL/dlse [B]): with P_bj = g_b exp(x_bj - lse_b) (the softmax, 0 outside S_b),
// dL/dq = P k / tau and dL/dk = P^T q / tau. One thread owns a key tile (its dk rows) and streams
// over all query blocks, recomputing the tile's scores; dq is accumulated in a per-thread [B, d]
// buffer and summed at the end (no atomics; deterministic for a fixed thread count).
//
// Optional positive sets (LightGNN Eq. 10): with binary masks packed into int32 words, pair
// (b, j) counts when popcount(m_b & m_j) >= max(popcount(m_b), popcount(m_j)) - slack. A query
// whose set is empty gets lse = -inf and a zero gradient.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int64_t kRows = 128;  // queries per block
constexpr int64_t kKeys = 512;  // keys per tile: a float tile is 256 KB (fits L2)

// exp(x) for the non-positive arguments of the online sums. float: Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2 / 2, and the degree-6 Taylor polynomial of e^r (relative error
// < 2e-7, about 1 ulp), scaled by 2^n through the exponent bits; written so that the loops that
// call it vectorise. Arguments below -87 return ~e^-87 (< 2e-38, below any sum it is added to).
// double: std::exp (the float64 path serves tests and gradchecks, not speed).
template <typename T>
inline T exp_nonpos(T x);

template <>
inline float exp_nonpos<float>(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split in hi + lo
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

template <>
inline double exp_nonpos<double>(double x) {
  return std::exp(x);
}

// Positive-set masks: packed words, their popcounts, and the slack.
struct PairMask {
  const int32_t* q_bits = nullptr;  // [B, words]
  const int32_t* k_bits = nullptr;  // [N, words]
  std::vector<int32_t> q_count, k_count;
  int64_t words = 0;
  int64_t slack = 0;

  bool active() const { return q_bits != nullptr; }

  // Scores of pairs outside the positive set become -inf (rows b0.., keys j0..).
  template <typename T>
  void apply(T* tile, int64_t ld, int64_t b0, int64_t nb, int64_t j0, int64_t nk) const {
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < nb; ++r) {
      const uint32_t* qb = reinterpret_cast<const uint32_t*>(q_bits + (b0 + r) * words);
      const int32_t cq = q_count[b0 + r];
      T* row = tile + r * ld;
      for (int64_t j = 0; j < nk; ++j) {
        const uint32_t* kb = reinterpret_cast<const uint32_t*>(k_bits + (j0 + j) * words);
        int32_t overlap = 0;
        for (int64_t w = 0; w < words; ++w) overlap += __builtin_popcount(qb[w] & kb[w]);
        if (overlap < std::max(cq, k_count[j0 + j]) - slack) row[j] = ninf;
      }
    }
  }
};

std::vector<int32_t> popcounts(const int32_t* bits, int64_t rows, int64_t words) {
  std::vector<int32_t> out(rows);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t c = 0;
    for (int64_t w = 0; w < words; ++w) c += __builtin_popcount(static_cast<uint32_t>(bits[r * words + w]));
    out[r] = c;
  }
  return out;
}

// Folds one tile row of scores x [n] into the running (max m, sum s).
template <typename T>
inline void fold_row(const T* x, int64_t n, bool masked, T& m, T& s) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T tmax = ninf;
#pragma omp simd reduction(max : tmax)
  for (int64_t j = 0; j < n; ++j) tmax = std::max(tmax, x[j]);
  if (tmax == ninf) return;  // nothing of the positive set in this tile
  const T nm = std::max(m, tmax);
  T acc = 0;
  if (masked) {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; ++j) acc += x[j] == ninf ? T(0) : exp_nonpos<T>(x[j] - nm);
  } else {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; ++j) acc += exp_nonpos<T>(x[j] - nm);
  }
  s = (m == ninf ? T(0) : s * std::exp(m - nm)) + acc;
  m = nm;
}

// Tile scores: out[:nb, :nk] (row stride kKeys) = qs[b0 : b0 + nb] k[j0 : j0 + nk]^T.
inline void tile_scores(torch::Tensor& buf, const torch::Tensor& qs, const torch::Tensor& k,
                        int64_t b0, int64_t nb, int64_t j0, int64_t nk) {
  auto out = buf.narrow(0, 0, nb).narrow(1, 0, nk);
  at::mm_out(out, qs.narrow(0, b0, nb), k.narrow(0, j0, nk).t());
}

PairMask make_mask(const c10::optional<torch::Tensor>& q_bits, const c10::optional<torch::Tensor>& k_bits,
                   int64_t slack, int64_t B, int64_t N) {
  PairMask pm;
  TORCH_CHECK(q_bits.has_value() == k_bits.has_value(),
              "dot_logsumexp (cpu): give both packed masks or neither");
  if (!q_bits) return pm;
  TORCH_CHECK(q_bits->scalar_type() == torch::kInt32 && k_bits->scalar_type() == torch::kInt32,
              "dot_logsumexp (cpu): packed masks must be int32");
  TORCH_CHECK(q_bits->dim() == 2 && k_bits->dim() == 2 && q_bits->size(0) == B &&
                  k_bits->size(0) == N && q_bits->size(1) == k_bits->size(1),
              "dot_logsumexp (cpu): packed masks must be [B, words] and [N, words]");
  TORCH_CHECK(q_bits->is_contiguous() && k_bits->is_contiguous(), "dot_logsumexp (cpu): contiguous masks");
  pm.words = q_bits->size(1);
  pm.q_bits = q_bits->data_ptr<int32_t>();
  pm.k_bits = k_bits->data_ptr<int32_t>();
  pm.q_count = popcounts(pm.q_bits, B, pm.words);
  pm.k_count = popcounts(pm.k_bits, N, pm.words);
  pm.slack = slack;
  return pm;
}

void check_inputs(const torch::Tensor& q, const torch::Tensor& k) {
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu(), "dot_logsumexp (cpu): CPU tensors only");
  TORCH_CHECK(q.dim() == 2 && k.dim() == 2 && q.size(1) == k.size(1),
              "dot_logsumexp (cpu): q [B, d] and k [N, d] must share d");
  TORCH_CHECK(q.scalar_type() == k.scalar_type(), "dot_logsumexp (cpu): q and k must share a dtype");
  TORCH_CHECK(q.is_contiguous() && k.is_contiguous(), "dot_logsumexp (cpu): contiguous q and k");
}

template <typename T>
void forward_impl(const torch::Tensor& qs, const torch::Tensor& k, const PairMask& pm, T* out) {
  const int64_t B = qs.size(0), N = k.size(0);
  const int64_t blocks = (B + kRows - 1) / kRows;
#pragma omp parallel
  {
    const at::NoGradGuard no_grad;  // grad mode is per thread: the workers' default is on
    auto buf = torch::empty({kRows, kKeys}, qs.options());
    T* tile = buf.data_ptr<T>();
    T m[kRows], s[kRows];
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t b0 = blk * kRows, nb = std::min(kRows, B - b0);
      std::fill(m, m + nb, -std::numeric_limits<T>::infinity());
      std::fill(s, s + nb, T(0));
      for (int64_t j0 = 0; j0 < N; j0 += kKeys) {
        const int64_t nk = std::min(kKeys, N - j0);
        tile_scores(buf, qs, k, b0, nb, j0, nk);
        if (pm.active()) pm.apply(tile, kKeys, b0, nb, j0, nk);
        for (int64_t r = 0; r < nb; ++r) fold_row(tile + r * kKeys, nk, pm.active(), m[r], s[r]);
      }
      for (int64_t r = 0; r < nb; ++r)
        out[b0 + r] = s[r] > 0 ? m[r] + std::log(s[r]) : -std::numeric_limits<T>::infinity();
    }
  }
}

// Row r of a recomputed tile -> P = g_b exp(x - lse_b) on the valid pairs (0 elsewhere).
template <typename T>
inline void probabilities(T* row, int64_t n, T lse, T g, bool masked) {
  const T ninf = -std::numeric_limits<T>::infinity();
  if (lse == ninf || g == T(0)) {
    std::fill(row, row + n, T(0));
  } else if (masked) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] = row[j] == ninf ? T(0) : g * exp_nonpos<T>(row[j] - lse);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] = g * exp_nonpos<T>(row[j] - lse);
  }
}

template <typename T>
void backward_impl(const torch::Tensor& qs, const torch::Tensor& k, const PairMask& pm, const T* lse,
                   const T* g, torch::Tensor& gk, torch::Tensor& gq_part, bool need_q, bool need_k) {
  const int64_t B = qs.size(0), N = k.size(0);
  const int64_t tiles = (N + kKeys - 1) / kKeys;
#pragma omp parallel
  {
    const at::NoGradGuard no_grad;
    auto buf = torch::empty({kRows, kKeys}, qs.options());
    T* tile = buf.data_ptr<T>();
    auto my_gq = need_q ? gq_part[omp_get_thread_num()] : torch::Tensor();
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t j0 = t * kKeys, nk = std::min(kKeys, N - j0);
      auto k_tile = k.narrow(0, j0, nk);
      auto gk_tile = gk.narrow(0, j0, nk);
      for (int64_t b0 = 0; b0 < B; b0 += kRows) {
        const int64_t nb = std::min(kRows, B - b0);
        tile_scores(buf, qs, k, b0, nb, j0, nk);
        if (pm.active()) pm.apply(tile, kKeys, b0, nb, j0, nk);
        for (int64_t r = 0; r < nb; ++r)
          probabilities(tile + r * kKeys, nk, lse[b0 + r], g[b0 + r], pm.active());
        auto p = buf.narrow(0, 0, nb).narrow(1, 0, nk);
        if (need_k) gk_tile.addmm_(p.t(), qs.narrow(0, b0, nb));  // qs = q / tau: dx/dk
        if (need_q) {
          auto part = my_gq.narrow(0, b0, nb);
          part.addmm_(p, k_tile);
        }
      }
    }
  }
}

}  // namespace

// lse [B] of the scores <q_b, k_j> / tau over j (in S_b when masks are given).
torch::Tensor dot_logsumexp_fwd(const torch::Tensor& q, const torch::Tensor& k, double tau,
                                const c10::optional<torch::Tensor>& q_bits,
                                const c10::optional<torch::Tensor>& k_bits, int64_t slack) {
  check_inputs(q, k);
  const int64_t B = q.size(0), N = k.size(0);
  const PairMask pm = make_mask(q_bits, k_bits, slack, B, N);
  auto lse = torch::empty({B}, q.options());
  if (B == 0) return lse;
  const auto qs = q.detach() * (1.0 / tau);  // the scores' scale folded into the queries once
  const auto kd = k.detach();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "dot_logsumexp_fwd",
                             [&] { forward_impl<scalar_t>(qs, kd, pm, lse.data_ptr<scalar_t>()); });
  return lse;
}

// (dL/dq [B, d], dL/dk [N, d]) from g = dL/dlse [B] and the forward's lse [B].
std::vector<torch::Tensor> dot_logsumexp_bwd(const torch::Tensor& q, const torch::Tensor& k, double tau,
                                             const c10::optional<torch::Tensor>& q_bits,
                                             const c10::optional<torch::Tensor>& k_bits, int64_t slack,
                                             const torch::Tensor& lse, const torch::Tensor& g,
                                             bool need_q, bool need_k) {
  check_inputs(q, k);
  const int64_t B = q.size(0), N = k.size(0), d = q.size(1);
  TORCH_CHECK(lse.numel() == B && g.numel() == B && lse.is_contiguous() && g.is_contiguous() &&
                  lse.scalar_type() == q.scalar_type() && g.scalar_type() == q.scalar_type(),
              "dot_logsumexp (cpu): lse and g must be contiguous [B] in q's dtype");
  const PairMask pm = make_mask(q_bits, k_bits, slack, B, N);
  auto gq = torch::zeros({B, d}, q.options());
  auto gk = torch::zeros({N, d}, q.options());
  if (B == 0 || N == 0 || !(need_q || need_k)) return {gq, gk};
  const auto qs = q.detach() * (1.0 / tau);
  const auto kd = k.detach();
  // Per-thread dq partial sums (P k, scaled by 1 / tau at the end).
  auto gq_part = need_q ? torch::zeros({omp_get_max_threads(), B, d}, q.options()) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "dot_logsumexp_bwd", [&] {
    backward_impl<scalar_t>(qs, kd, pm, lse.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), gk, gq_part,
                            need_q, need_k);
  });
  if (need_q) gq = gq_part.sum(0).mul_(1.0 / tau);
  return {gq, gk};
}

}  // namespace cpu
}  // namespace fgd
