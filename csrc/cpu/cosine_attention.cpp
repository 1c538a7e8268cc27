// CPU (OpenMP) kernels of ops.cosine_attention: per destination row of a CSR, the cosine SDDMM,
// the row softmax and the weighted aggregation in one pass (forward), and the fused softmax
// backward (dot products + row reduction). Semantics: ops/cosine_attention.py (reference).
// Row-parallel: each row's outputs (y[r] and the per-edge values of its edges, written through
// eid) belong to one thread; no atomics, deterministic.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 64;  // rows per dynamic chunk: degrees are long-tailed
constexpr int kPrefetch = 4;   // gathered rows fetched ahead (the loops are gather-latency bound)

template <typename T>
inline T dot(const T* a, const T* b, int64_t d) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

template <typename T>
inline void prefetch_row(const T* x, int64_t d) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t k = 0; k < d; k += kLine) __builtin_prefetch(x + k);
}

// y[r] = sum_j a_j v[col_j], a = softmax_j(s_j), s_j = inv_tau * (cos_in[e_j] or <k_row[r], k_col[col_j]>);
// alpha[e_j] = a_j, cos_out[e_j] = the cosine (when computed here). e_j = eid ? eid[j] : j.
template <typename T>
void forward_kernel(const int64_t* rowptr, const int64_t* col, const int64_t* eid, const T* cos_in,
                    const T* k_row, const T* k_col, const T* v_col, T inv_tau, int64_t rows,
                    int64_t dk, int64_t dv, T* y, T* alpha, T* cos_out) {
#pragma omp parallel
  {
    std::vector<T> s;  // the row's logits, then its weights (per thread, grown as needed)
#pragma omp for schedule(dynamic, kRowChunk)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t begin = rowptr[r], n = rowptr[r + 1] - begin;
      T* yr = y + r * dv;
      std::fill(yr, yr + dv, T(0));
      if (n == 0) continue;
      if (static_cast<int64_t>(s.size()) < n) s.resize(n);
      const T* kr = k_row + r * dk;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const int64_t e = eid ? eid[begin + j] : begin + j;
        T c;
        if (cos_in) {
          c = cos_in[e];
        } else {
          if (j + kPrefetch < n) prefetch_row(k_col + col[begin + j + kPrefetch] * dk, dk);
          c = dot(kr, k_col + col[begin + j] * dk, dk);
          cos_out[e] = c;
        }
        s[j] = c * inv_tau;
        m = std::max(m, s[j]);
      }
      T total = 0;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - m);
        total += s[j];
      }
      const T inv_total = T(1) / total;
      for (int64_t j = 0; j < n; ++j) {
        if (j + kPrefetch < n) prefetch_row(v_col + col[begin + j + kPrefetch] * dv, dv);
        const T a = s[j] * inv_total;
        alpha[eid ? eid[begin + j] : begin + j] = a;
        const T* vc = v_col + col[begin + j] * dv;
#pragma omp simd
        for (int64_t k = 0; k < dv; ++k) yr[k] += a * vc[k];
      }
    }
  }
}

// gs[e_j] = alpha[e_j] (d_j - sum_j' alpha[e_j'] d_j'), d_j = <gy[r], v[col_j]> + g_alpha[e_j].
template <typename T>
void backward_kernel(const int64_t* rowptr, const int64_t* col, const int64_t* eid, const T* alpha,
                     const T* g_alpha, const T* gy, const T* v_col, int64_t rows, int64_t dv,
                     T* gs) {
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    const T* gr = gy + r * dv;
    T total = 0;
    for (int64_t j = begin; j < end; ++j) {
      if (j + kPrefetch < end) prefetch_row(v_col + col[j + kPrefetch] * dv, dv);
      const int64_t e = eid ? eid[j] : j;
      const T d = dot(gr, v_col + col[j] * dv, dv) + (g_alpha ? g_alpha[e] : T(0));
      gs[e] = d;
      total += alpha[e] * d;
    }
    for (int64_t j = begin; j < end; ++j) {
      const int64_t e = eid ? eid[j] : j;
      gs[e] = alpha[e] * (gs[e] - total);
    }
  }
}

template <typename T>
const T* ptr_or_null(const c10::optional<torch::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

void check_csr(const torch::Tensor& rowptr, const torch::Tensor& col,
               const c10::optional<torch::Tensor>& eid, const char* what) {
  TORCH_CHECK(rowptr.device().is_cpu() && col.device().is_cpu(), what, " (cpu): CPU tensors only");
  TORCH_CHECK(rowptr.scalar_type() == torch::kInt64 && col.scalar_type() == torch::kInt64 &&
                  (!eid || eid->scalar_type() == torch::kInt64),
              what, " (cpu): rowptr, col and eid must be int64");
  TORCH_CHECK(!eid || eid->numel() == col.numel(), what, " (cpu): eid must have one entry per nonzero");
}

}  // namespace

std::vector<torch::Tensor> cosine_attention_forward(
    const torch::Tensor& rowptr, const torch::Tensor& col, const c10::optional<torch::Tensor>& eid,
    const c10::optional<torch::Tensor>& cos_in, const torch::Tensor& k_row, const torch::Tensor& k_col,
    const torch::Tensor& v_col, double inv_tau) {
  check_csr(rowptr, col, eid, "cosine_attention_forward");
  const int64_t rows = rowptr.numel() - 1, nnz = col.numel();
  TORCH_CHECK(k_row.dim() == 2 && k_col.dim() == 2 && v_col.dim() == 2 && k_row.size(0) == rows &&
                  k_row.size(1) == k_col.size(1) && v_col.size(0) == k_col.size(0),
              "cosine_attention_forward (cpu): k_row [R, k], k_col [C, k], v_col [C, dv] expected");
  TORCH_CHECK(k_row.scalar_type() == k_col.scalar_type() && k_row.scalar_type() == v_col.scalar_type(),
              "cosine_attention_forward (cpu): keys and values must share a dtype");
  TORCH_CHECK(!cos_in || cos_in->numel() == nnz, "cosine_attention_forward (cpu): cos has ",
              cos_in ? cos_in->numel() : 0, " entries for ", nnz, " edges");
  auto y = torch::empty({rows, v_col.size(1)}, v_col.options());
  auto alpha = torch::empty({nnz}, v_col.options());
  auto cos_out = cos_in ? *cos_in : torch::empty({nnz}, v_col.options());
  AT_DISPATCH_FLOATING_TYPES(v_col.scalar_type(), "cosine_attention_forward", [&] {
    forward_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                             ptr_or_null<int64_t>(eid), ptr_or_null<scalar_t>(cos_in),
                             k_row.data_ptr<scalar_t>(), k_col.data_ptr<scalar_t>(),
                             v_col.data_ptr<scalar_t>(), static_cast<scalar_t>(inv_tau), rows,
                             k_row.size(1), v_col.size(1), y.data_ptr<scalar_t>(),
                             alpha.data_ptr<scalar_t>(), cos_out.data_ptr<scalar_t>());
  });
  return {y, alpha, cos_out};
}

torch::Tensor cosine_attention_backward(const torch::Tensor& rowptr, const torch::Tensor& col,
                                        const c10::optional<torch::Tensor>& eid,
                                        const torch::Tensor& alpha,
                                        const c10::optional<torch::Tensor>& g_alpha,
                                        const torch::Tensor& gy, const torch::Tensor& v_col) {
  check_csr(rowptr, col, eid, "cosine_attention_backward");
  const int64_t rows = rowptr.numel() - 1, nnz = col.numel();
  TORCH_CHECK(gy.dim() == 2 && v_col.dim() == 2 && gy.size(0) == rows && gy.size(1) == v_col.size(1),
              "cosine_attention_backward (cpu): gy [R, dv] and v_col [C, dv] expected");
  TORCH_CHECK(alpha.numel() == nnz && (!g_alpha || g_alpha->numel() == nnz),
              "cosine_attention_backward (cpu): alpha and g_alpha need one entry per edge");
  TORCH_CHECK(alpha.scalar_type() == gy.scalar_type() && gy.scalar_type() == v_col.scalar_type() &&
                  (!g_alpha || g_alpha->scalar_type() == gy.scalar_type()),
              "cosine_attention_backward (cpu): all float inputs must share a dtype");
  auto gs = torch::empty({nnz}, gy.options());
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "cosine_attention_backward", [&] {
    backward_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                              ptr_or_null<int64_t>(eid), alpha.data_ptr<scalar_t>(),
                              ptr_or_null<scalar_t>(g_alpha), gy.data_ptr<scalar_t>(),
                              v_col.data_ptr<scalar_t>(), rows, gy.size(1), gs.data_ptr<scalar_t>());
  });
  return gs;
}

}  // namespace cpu
}  // namespace fgd
