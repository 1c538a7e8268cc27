// CPU (OpenMP) product of a CSR matrix with its values in storage order and a dense matrix:
// y[r] = sum_{j in row r} w[j] x[col[j]]. Semantics: ops/weighted_spmm.py (the product when the
// pattern's positions are its entry ids: no permutation, no renormalisation, one weight row).
//
// The lookahead runs over the flat entry array, across row ends (kLookahead): a prefetch within
// a row only starts every row with cold gathers; at Gowalla's ~23 entries a row (the bipartite
// operator) that is a fifth of the gathers. One LightGCN layer on Gowalla, d = 64, 1 thread, in
// turns on the shared 2-core EPYC: an in-row prefetch of 4 1.2-1.5x slower than a flat lookahead
// of 16; flat 16 / 24 / 32 / 48 / 64 / 96 / 128: 27 / 22 / 21 / 18-21 / 20 / 22 / 27 ms.
// masked_spmm.cpp's products and sddmm.cpp's dot products use the same lookahead.
#include <torch/extension.h>

#include <algorithm>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 64;       // rows per dynamic OpenMP chunk (degrees are long-tailed)
constexpr int64_t kLookahead = 48;  // entries ahead whose gathered rows are fetched

// Columns per pass: a block of 256 bytes stays in registers across a row (AVX2: 8 registers).
template <typename T>
constexpr int64_t kBlock = 256 / sizeof(T);

template <typename T, bool kFull>
void csr_spmm_kernel(const int64_t* rowptr, const int64_t* col, const T* w, const T* x, T* y,
                     int64_t num_rows, int64_t nnz, int64_t d) {
  constexpr int64_t kC = kBlock<T>;
  constexpr int64_t kLine = 64 / sizeof(T);
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    for (int64_t k0 = 0; k0 < d; k0 += kC) {
      const int64_t n = kFull ? kC : std::min(kC, d - k0);
      T acc[kC] = {};
      for (int64_t j = begin; j < end; ++j) {
        if (j + kLookahead < nnz) {  // past the row's end too: the next rows' gathers
          const T* ahead = x + col[j + kLookahead] * d + k0;
          for (int64_t k = 0; k < n; k += kLine) __builtin_prefetch(ahead + k);
        }
        const T c = w[j];
        const T* xc = x + col[j] * d + k0;
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) acc[k] += c * xc[k];
      }
      T* yr = y + r * d + k0;
      for (int64_t k = 0; k < n; ++k) yr[k] = acc[k];
    }
  }
}

}  // namespace

torch::Tensor csr_spmm(const torch::Tensor& rowptr, const torch::Tensor& col,
                       const torch::Tensor& w, const torch::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "csr_spmm (cpu): x is on ", x.device());
  TORCH_CHECK(rowptr.is_contiguous() && col.is_contiguous() && w.is_contiguous() && x.is_contiguous(),
              "csr_spmm (cpu): expects contiguous tensors");
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "csr_spmm (cpu): w is ", w.scalar_type(),
              " but x is ", x.scalar_type());
  const int64_t num_rows = rowptr.numel() - 1, d = x.size(1);
  auto y = torch::empty({num_rows, d}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "csr_spmm_cpu", [&] {
    auto kernel = d % kBlock<scalar_t> == 0 ? csr_spmm_kernel<scalar_t, true>
                                            : csr_spmm_kernel<scalar_t, false>;
    kernel(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), w.data_ptr<scalar_t>(),
           x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), num_rows, col.numel(), d);
  });
  return y;
}

}  // namespace cpu
}  // namespace fgd
