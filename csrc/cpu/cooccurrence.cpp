// CPU (OpenMP) item-item co-occurrence G = R^T R, CSR rows [item_begin, item_end): Gustavson's
// row-by-row product with a dense accumulator per thread. Row i of G is the sum over the users u
// of item i of row u of R: G_ij = number of users with both i and j. Semantics:
// ops/cooccurrence.py (the reference); columns ascending, so the result equals it exactly.
//
// One accumulation pass: row r's entries are written at an offset given by an upper bound on its
// length known up front (the sum of its users' degrees, >= the row's nonzeros), then the rows are
// packed into exactly sized arrays. The touched columns come out ascending from a bitmap scan
// when the row is dense relative to the item count, else from a sort. With `scale`, the values
// are G_ij * scale_i * scale_j (DGR's omega) instead of the counts.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 16;  // rows per dynamic chunk: co-occurrence rows are long-tailed

struct RowScratch {  // one thread's dense accumulator, bitmap and touched list
  std::vector<int32_t> count;
  std::vector<uint64_t> bits;
  std::vector<int64_t> touched;
  explicit RowScratch(int64_t num_items)
      : count(static_cast<size_t>(num_items), 0), bits(static_cast<size_t>((num_items + 63) / 64), 0) {}
};

// Accumulates row i into the scratch and writes its columns (ascending) and values at col/val;
// clears the scratch; returns the row's number of nonzeros.
int64_t product_row(int64_t i, const int64_t* rowptr_i, const int64_t* col_user, const int64_t* rowptr_u,
                    const int64_t* col_item, bool diagonal, const float* scale, RowScratch& s,
                    int64_t* col, float* val) {
  s.touched.clear();
  for (int64_t a = rowptr_i[i]; a < rowptr_i[i + 1]; ++a) {
    const int64_t u = col_user[a];
    for (int64_t b = rowptr_u[u]; b < rowptr_u[u + 1]; ++b) {
      const int64_t j = col_item[b];
      if (s.count[j]++ == 0) s.touched.push_back(j);
    }
  }
  if (!diagonal) s.count[i] = 0;  // dropped below (a zero count is not stored)
  const int64_t words = static_cast<int64_t>(s.bits.size());
  const int64_t m = static_cast<int64_t>(s.touched.size());
  int64_t n = 0;
  auto emit = [&](int64_t j) {
    const int32_t c = s.count[j];
    s.count[j] = 0;
    if (c == 0) return;
    col[n] = j;
    val[n++] = scale ? static_cast<float>(c) * scale[i] * scale[j] : static_cast<float>(c);
  };
  // Sorting m columns costs ~m log2 m; scanning the bitmap ~words + m.
  if (m > 0 && static_cast<double>(m) * std::log2(static_cast<double>(m) + 1) > 2.0 * words) {
    for (int64_t j : s.touched) s.bits[j >> 6] |= uint64_t(1) << (j & 63);
    for (int64_t w = 0; w < words; ++w) {
      uint64_t word = s.bits[w];
      s.bits[w] = 0;
      while (word) {
        emit(w * 64 + __builtin_ctzll(word));
        word &= word - 1;
      }
    }
  } else {
    std::sort(s.touched.begin(), s.touched.end());
    for (int64_t j : s.touched) emit(j);
  }
  return n;
}

}  // namespace

// Returns [rowptr int64 [n + 1], col int64 [nnz], value float32 [nnz]] for rows
// item_begin .. item_end - 1 of G (without G_ii when `diagonal` is false); value = count, or
// count * scale_i * scale_j with `scale` (float32 [I]).
std::vector<torch::Tensor> cooccurrence(const torch::Tensor& rowptr_i, const torch::Tensor& col_user,
                                        const torch::Tensor& rowptr_u, const torch::Tensor& col_item,
                                        int64_t num_items, int64_t item_begin, int64_t item_end,
                                        bool diagonal, const c10::optional<torch::Tensor>& scale) {
  for (auto* t : {&rowptr_i, &col_user, &rowptr_u, &col_item}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kInt64 && t->is_contiguous(),
                "cooccurrence (cpu): CSR arrays must be contiguous int64 CPU tensors");
  }
  TORCH_CHECK(rowptr_i.numel() == num_items + 1, "cooccurrence (cpu): rowptr_i must be [I + 1]");
  TORCH_CHECK(0 <= item_begin && item_begin <= item_end && item_end <= num_items,
              "cooccurrence (cpu): need 0 <= item_begin <= item_end <= num_items");
  TORCH_CHECK(!scale || (scale->device().is_cpu() && scale->scalar_type() == torch::kFloat32 &&
                         scale->is_contiguous() && scale->numel() == num_items),
              "cooccurrence (cpu): scale must be a contiguous float32 CPU tensor [I]");
  const int64_t* rpi = rowptr_i.data_ptr<int64_t>();
  const int64_t* cu = col_user.data_ptr<int64_t>();
  const int64_t* rpu = rowptr_u.data_ptr<int64_t>();
  const int64_t* ci = col_item.data_ptr<int64_t>();
  const float* sc = scale ? scale->data_ptr<float>() : nullptr;
  const int64_t n = item_end - item_begin;

  // Upper bound of each row's length: the sum of its users' degrees (capped at I).
  std::vector<int64_t> bound(static_cast<size_t>(n) + 1, 0);
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = item_begin + r;
    int64_t s = 0;
    for (int64_t a = rpi[i]; a < rpi[i + 1]; ++a) s += rpu[cu[a] + 1] - rpu[cu[a]];
    bound[r + 1] = std::min(s, num_items);
  }
  for (int64_t r = 0; r < n; ++r) bound[r + 1] += bound[r];

  auto opts = rowptr_i.options();
  auto tmp_col = torch::empty({bound[n]}, opts);
  auto tmp_val = torch::empty({bound[n]}, opts.dtype(torch::kFloat32));
  int64_t* tc = tmp_col.data_ptr<int64_t>();
  float* tv = tmp_val.data_ptr<float>();
  auto rowptr = torch::zeros({n + 1}, opts);
  int64_t* rp = rowptr.data_ptr<int64_t>();
#pragma omp parallel
  {
    RowScratch scratch(num_items);
#pragma omp for schedule(dynamic, kRowChunk)
    for (int64_t r = 0; r < n; ++r) {
      rp[r + 1] = product_row(item_begin + r, rpi, cu, rpu, ci, diagonal, sc, scratch,
                              tc + bound[r], tv + bound[r]);
    }
  }
  for (int64_t r = 0; r < n; ++r) rp[r + 1] += rp[r];

  auto col = torch::empty({rp[n]}, opts);
  auto val = torch::empty({rp[n]}, opts.dtype(torch::kFloat32));
  int64_t* oc = col.data_ptr<int64_t>();
  float* ov = val.data_ptr<float>();
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t len = rp[r + 1] - rp[r];
    std::memcpy(oc + rp[r], tc + bound[r], static_cast<size_t>(len) * sizeof(int64_t));
    std::memcpy(ov + rp[r], tv + bound[r], static_cast<size_t>(len) * sizeof(float));
  }
  return {rowptr, col, val};
}

}  // namespace cpu
}  // namespace fgd
