// CPU (OpenMP) sparse-sparse product C = A B (+ I) on CSR matrices, columns sorted in each row.
// Semantics: ops/spgemm.py (reference: torch.sparse.mm on COO). Gustavson's row-by-row product:
// row r of C is sum_{(r, m) in A} a_rm B[m, :], gathered in a per-thread dense accumulator
// (values [C] plus a marker of the row that last touched each column) and emitted sorted. One
// pass: each chunk of rows is written to its own growing buffer (no symbolic pass recomputing
// the expansion to size C), then the chunks are copied into place. Row-parallel (dynamic chunks:
// row lengths are long-tailed), no atomics; within a row the sums run in A's column order then
// B's, so the result does not depend on the thread count.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int64_t kRowChunk = 64;

// One chunk of output rows, produced by one thread: its rows' sorted columns and values back to
// back, and each row's count.
template <typename T>
struct RowChunk {
  std::vector<int64_t> col;
  std::vector<T> val;
  std::vector<int64_t> count;
};

template <typename T>
void spgemm_kernel(const int64_t* a_ptr, const int64_t* a_col, const T* a_val, const int64_t* b_ptr,
                   const int64_t* b_col, const T* b_val, int64_t rows, int64_t cols, bool plus_identity,
                   torch::Tensor& c_ptr_t, torch::Tensor& c_col_t, torch::Tensor& c_val_t,
                   const torch::TensorOptions& val_opts) {
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<RowChunk<T>> out(chunks);
#pragma omp parallel
  {
    std::vector<T> acc(cols, T(0));
    std::vector<int32_t> marker(cols, -1);  // the last row that touched each column
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      RowChunk<T>& o = out[ch];
      const int64_t r0 = ch * kRowChunk, r1 = std::min(rows, r0 + kRowChunk);
      // Upper bound of the chunk's output: its rows' expansion (+ the diagonal).
      int64_t bound = plus_identity ? r1 - r0 : 0;
      for (int64_t p = a_ptr[r0]; p < a_ptr[r1]; ++p) bound += b_ptr[a_col[p] + 1] - b_ptr[a_col[p]];
      o.col.resize(bound);
      o.val.resize(bound);
      o.count.resize(r1 - r0);
      int64_t* oc = o.col.data();
      T* ov = o.val.data();
      int64_t n = 0;
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t tag = static_cast<int32_t>(r);
        const int64_t first = n;
        if (plus_identity && r < cols) {
          marker[r] = tag;
          acc[r] = T(1);
          oc[n++] = r;
        }
        for (int64_t p = a_ptr[r]; p < a_ptr[r + 1]; ++p) {
          const int64_t m = a_col[p];
          const T a = a_val[p];
          for (int64_t q = b_ptr[m]; q < b_ptr[m + 1]; ++q) {
            const int64_t c = b_col[q];
            if (marker[c] != tag) {
              marker[c] = tag;
              acc[c] = a * b_val[q];
              oc[n++] = c;
            } else {
              acc[c] += a * b_val[q];
            }
          }
        }
        std::sort(oc + first, oc + n);
        for (int64_t j = first; j < n; ++j) ov[j] = acc[oc[j]];
        o.count[r - r0] = n - first;
      }
      o.col.resize(n);
      o.val.resize(n);
    }
  }
  auto* c_ptr = c_ptr_t.data_ptr<int64_t>();
  c_ptr[0] = 0;
  std::vector<int64_t> chunk_start(chunks + 1, 0);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    for (int64_t j = 0; j < static_cast<int64_t>(out[ch].count.size()); ++j) {
      const int64_t r = ch * kRowChunk + j;
      c_ptr[r + 1] = c_ptr[r] + out[ch].count[j];
    }
    chunk_start[ch + 1] = chunk_start[ch] + static_cast<int64_t>(out[ch].col.size());
  }
  const int64_t nnz = chunk_start[chunks];
  c_col_t = torch::empty({nnz}, c_ptr_t.options());
  c_val_t = torch::empty({nnz}, val_opts);
  auto* c_col = c_col_t.data_ptr<int64_t>();
  auto* c_val = c_val_t.data_ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    std::copy(out[ch].col.begin(), out[ch].col.end(), c_col + chunk_start[ch]);
    std::copy(out[ch].val.begin(), out[ch].val.end(), c_val + chunk_start[ch]);
  }
}

}  // namespace

// (rowptr [R + 1], col [nnz], val [nnz]) of C = A B (+ I when plus_identity; needs R <= cols for
// the diagonal entries it adds).
std::vector<torch::Tensor> spgemm(const torch::Tensor& a_ptr, const torch::Tensor& a_col, const torch::Tensor& a_val,
                                  const torch::Tensor& b_ptr, const torch::Tensor& b_col, const torch::Tensor& b_val,
                                  int64_t cols, bool plus_identity) {
  for (const auto* t : {&a_ptr, &a_col, &a_val, &b_ptr, &b_col, &b_val}) {
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->dim() == 1,
                "spgemm (cpu): contiguous 1-D CPU tensors only");
  }
  TORCH_CHECK(a_ptr.scalar_type() == torch::kInt64 && a_col.scalar_type() == torch::kInt64 &&
                  b_ptr.scalar_type() == torch::kInt64 && b_col.scalar_type() == torch::kInt64,
              "spgemm (cpu): CSR indices must be int64");
  TORCH_CHECK(a_val.scalar_type() == b_val.scalar_type(), "spgemm (cpu): A and B values must share a dtype");
  TORCH_CHECK(a_ptr.numel() - 1 < (int64_t(1) << 31), "spgemm (cpu): at most 2^31 - 1 rows");
  TORCH_CHECK(a_col.numel() == a_val.numel() && b_col.numel() == b_val.numel(),
              "spgemm (cpu): one value per stored column");
  const int64_t rows = a_ptr.numel() - 1;
  auto c_ptr = torch::empty({rows + 1}, a_ptr.options());
  torch::Tensor c_col, c_val;
  AT_DISPATCH_FLOATING_TYPES(a_val.scalar_type(), "spgemm", [&] {
    spgemm_kernel<scalar_t>(a_ptr.data_ptr<int64_t>(), a_col.data_ptr<int64_t>(), a_val.data_ptr<scalar_t>(),
                            b_ptr.data_ptr<int64_t>(), b_col.data_ptr<int64_t>(), b_val.data_ptr<scalar_t>(),
                            rows, cols, plus_identity, c_ptr, c_col, c_val, a_val.options());
  });
  return {c_ptr, c_col, c_val};
}

}  // namespace cpu
}  // namespace fgd
