// CPU (OpenMP) SDDMM on a CSR pattern: out[j] = <a[row(j)], b[col[j]]> for every stored position j.
// Semantics: ops/sddmm.py (reference). Row-parallel: each row's dot products are written by one
// thread, no atomics; with CSR(R) positions are edge ids.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 64;  // rows per dynamic chunk: degrees are long-tailed
// Positions ahead whose gathered b rows are fetched, over the flat position array (across row
// ends), as csr_spmm.cpp's lookahead: the dot products are gather-latency bound. The prefetch is
// written in each loop: in a helper function of its own GCC 12 finds no side effect and drops the
// call (no prefetch instruction was left in this file's object code).
constexpr int64_t kLookahead = 48;

// <a, b> over k entries; K > 0: k == K at compile time (a fixed trip count: the reduction is a
// few vector FMAs and one horizontal sum; with a runtime k it measured as slow as a whole SpMM on
// Gowalla at k = 64).
template <typename T, int64_t K>
inline T dot_k(const T* a, const T* b, int64_t k) {
  const int64_t n = K > 0 ? K : k;
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t t = 0; t < n; ++t) s += a[t] * b[t];
  return s;
}

// Calls kernel.template operator()<K>() with K = k for the common widths, else K = 0.
template <typename F>
void with_width(int64_t k, F&& kernel) {
  if (k == 64)
    kernel(std::integral_constant<int64_t, 64>{});
  else if (k == 32)
    kernel(std::integral_constant<int64_t, 32>{});
  else
    kernel(std::integral_constant<int64_t, 0>{});
}

template <typename T, int64_t K>
void sddmm_kernel(const int64_t* rowptr, const int64_t* col, const T* a, const T* b, int64_t rows,
                  int64_t k, T* out) {
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t nnz = rowptr[rows], n = K > 0 ? K : k;
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < rows; ++r) {
    const T* ar = a + r * k;
    for (int64_t j = rowptr[r]; j < rowptr[r + 1]; ++j) {
      if (j + kLookahead < nnz) {
        const T* ahead = b + col[j + kLookahead] * k;
        for (int64_t t = 0; t < n; t += kLine) __builtin_prefetch(ahead + t);
      }
      out[j] = dot_k<T, K>(ar, b + col[j] * k, k);
    }
  }
}


// The same scores standardised within each row: out[j] = (s_j - mean_r) / max(std_r, eps) over
// the row's positions (population std; a row of one gets 0). The row's scores stay in cache
// between the dot products and the two moments, summed in double.
template <typename T, int64_t K>
void row_standardised_kernel(const int64_t* rowptr, const int64_t* col, const T* a, const T* b,
                             int64_t rows, int64_t k, double eps, T* out) {
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t nnz = rowptr[rows], n = K > 0 ? K : k;
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < rows; ++r) {
    const T* ar = a + r * k;
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    double sum = 0;
    for (int64_t j = begin; j < end; ++j) {
      if (j + kLookahead < nnz) {
        const T* ahead = b + col[j + kLookahead] * k;
        for (int64_t t = 0; t < n; t += kLine) __builtin_prefetch(ahead + t);
      }
      const T s = dot_k<T, K>(ar, b + col[j] * k, k);
      out[j] = s;
      sum += s;
    }
    const double n = end - begin > 0 ? double(end - begin) : 1.0;
    const T mean = static_cast<T>(sum / n);
    double sq = 0;
    for (int64_t j = begin; j < end; ++j) {
      const T c = out[j] - mean;
      out[j] = c;
      sq += double(c) * double(c);
    }
    const T scale = static_cast<T>(1.0 / std::max(std::sqrt(sq / n), eps));
    for (int64_t j = begin; j < end; ++j) out[j] *= scale;
  }
}

}  // namespace

torch::Tensor sddmm(const torch::Tensor& rowptr, const torch::Tensor& col, const torch::Tensor& a,
                    const torch::Tensor& b) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "sddmm (cpu): CPU tensors only");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1),
              "sddmm (cpu): a [R, k] and b [C, k] must share k");
  TORCH_CHECK(a.size(0) == rowptr.numel() - 1, "sddmm (cpu): a must have one row per CSR row");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "sddmm (cpu): a and b must share a dtype");
  auto rp = rowptr.contiguous(), cl = col.contiguous();
  auto ac = a.contiguous(), bc = b.contiguous();
  auto out = torch::empty({cl.numel()}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "sddmm", [&] {
    with_width(ac.size(1), [&](auto width) {
      sddmm_kernel<scalar_t, decltype(width)::value>(
          rp.data_ptr<int64_t>(), cl.data_ptr<int64_t>(), ac.data_ptr<scalar_t>(),
          bc.data_ptr<scalar_t>(), ac.size(0), ac.size(1), out.data_ptr<scalar_t>());
    });
  });
  return out;
}


torch::Tensor sddmm_row_standardised(const torch::Tensor& rowptr, const torch::Tensor& col,
                                     const torch::Tensor& a, const torch::Tensor& b, double eps) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(),
              "sddmm_row_standardised (cpu): CPU tensors only");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1),
              "sddmm_row_standardised (cpu): a [R, k] and b [C, k] must share k");
  TORCH_CHECK(a.size(0) == rowptr.numel() - 1,
              "sddmm_row_standardised (cpu): a must have one row per CSR row");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(),
              "sddmm_row_standardised (cpu): a and b must share a dtype");
  auto rp = rowptr.contiguous(), cl = col.contiguous();
  auto ac = a.contiguous(), bc = b.contiguous();
  auto out = torch::empty({cl.numel()}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "sddmm_row_standardised", [&] {
    with_width(ac.size(1), [&](auto width) {
      row_standardised_kernel<scalar_t, decltype(width)::value>(
          rp.data_ptr<int64_t>(), cl.data_ptr<int64_t>(), ac.data_ptr<scalar_t>(),
          bc.data_ptr<scalar_t>(), ac.size(0), ac.size(1), eps, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace fgd
