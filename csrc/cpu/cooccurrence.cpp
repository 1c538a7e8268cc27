// CPU (OpenMP) item-item co-occurrence G = R^T R, CSR rows [item_begin, item_end): Gustavson's
// row-by-row product with a dense accumulator per thread. Row i of G is sum over the users u of
// item i of row u of R: G_ij = number of users with both i and j. Columns come out ascending, so
// the result equals the reference's (ops/cooccurrence.py) exactly. Two passes (sizes, then
// values) so the block is written once into exactly sized arrays; the caller bounds a block's
// work (sum of the users' degrees over its rows), which bounds its memory.
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 16;  // rows per dynamic chunk: co-occurrence rows are long-tailed

// Counts row i's co-occurrences in `count` (dense, zero outside the touched items) and lists
// the touched items in `touched` (unordered); the caller reads and clears `count`.
void accumulate_row(int64_t i, const int64_t* rowptr_i, const int64_t* col_user,
                    const int64_t* rowptr_u, const int64_t* col_item, bool diagonal,
                    std::vector<int32_t>& count, std::vector<int64_t>& touched) {
  touched.clear();
  for (int64_t a = rowptr_i[i]; a < rowptr_i[i + 1]; ++a) {
    const int64_t u = col_user[a];
    for (int64_t b = rowptr_u[u]; b < rowptr_u[u + 1]; ++b) {
      const int64_t j = col_item[b];
      if (count[j]++ == 0) touched.push_back(j);
    }
  }
  if (!diagonal && count[i] != 0) {
    count[i] = 0;
    touched.erase(std::find(touched.begin(), touched.end(), i));
  }
}

}  // namespace

// Returns [rowptr int64 [n + 1], col int64 [nnz], count float32 [nnz]] for rows
// item_begin .. item_end - 1 of G (without G_ii when `diagonal` is false).
std::vector<torch::Tensor> cooccurrence(const torch::Tensor& rowptr_i, const torch::Tensor& col_user,
                                        const torch::Tensor& rowptr_u, const torch::Tensor& col_item,
                                        int64_t num_items, int64_t item_begin, int64_t item_end,
                                        bool diagonal) {
  for (auto* t : {&rowptr_i, &col_user, &rowptr_u, &col_item}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kInt64 && t->is_contiguous(),
                "cooccurrence (cpu): CSR arrays must be contiguous int64 CPU tensors");
  }
  TORCH_CHECK(rowptr_i.numel() == num_items + 1, "cooccurrence (cpu): rowptr_i must be [I + 1]");
  TORCH_CHECK(0 <= item_begin && item_begin <= item_end && item_end <= num_items,
              "cooccurrence (cpu): need 0 <= item_begin <= item_end <= num_items");
  const int64_t* rpi = rowptr_i.data_ptr<int64_t>();
  const int64_t* cu = col_user.data_ptr<int64_t>();
  const int64_t* rpu = rowptr_u.data_ptr<int64_t>();
  const int64_t* ci = col_item.data_ptr<int64_t>();
  const int64_t n = item_end - item_begin;
  auto rowptr = torch::zeros({n + 1}, rowptr_i.options());
  int64_t* rp = rowptr.data_ptr<int64_t>();

#pragma omp parallel
  {
    std::vector<int32_t> count(static_cast<size_t>(num_items), 0);
    std::vector<int64_t> touched;
#pragma omp for schedule(dynamic, kRowChunk)
    for (int64_t r = 0; r < n; ++r) {
      accumulate_row(item_begin + r, rpi, cu, rpu, ci, diagonal, count, touched);
      rp[r + 1] = static_cast<int64_t>(touched.size());
      for (int64_t j : touched) count[j] = 0;
    }
  }
  for (int64_t r = 0; r < n; ++r) rp[r + 1] += rp[r];

  auto col = torch::empty({rp[n]}, rowptr_i.options());
  auto val = torch::empty({rp[n]}, rowptr_i.options().dtype(torch::kFloat32));
  int64_t* out_col = col.data_ptr<int64_t>();
  float* out_val = val.data_ptr<float>();
#pragma omp parallel
  {
    std::vector<int32_t> count(static_cast<size_t>(num_items), 0);
    std::vector<int64_t> touched;
#pragma omp for schedule(dynamic, kRowChunk)
    for (int64_t r = 0; r < n; ++r) {
      accumulate_row(item_begin + r, rpi, cu, rpu, ci, diagonal, count, touched);
      std::sort(touched.begin(), touched.end());  // ascending columns (the sizes pass skips it)
      int64_t o = rp[r];
      for (int64_t j : touched) {
        out_col[o] = j;
        out_val[o++] = static_cast<float>(count[j]);
        count[j] = 0;
      }
    }
  }
  return {rowptr, col, val};
}

}  // namespace cpu
}  // namespace fgd
