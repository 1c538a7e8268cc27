// CPU (OpenMP) segmented top-k: per CSR row, the positions and values of its k largest (or
// smallest) entries, best first, ties to the lower position; pads are position -1, value 0.
// Semantics: ops/segment_topk.py (reference). Row-parallel: each output row is written by one
// thread. One pass per row keeps the k best so far, sorted, in the output row itself: an entry
// that beats the current k-th is inserted by shifting the worse ones down. Entries come in
// position order and only a strictly better value moves past another, so ties keep the lower
// position. O(length) comparisons for typical rows, O(length * k) at worst (a row sorted the
// wrong way); meant for small k (neighbour lists).
#include <torch/extension.h>

#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 16;  // rows per dynamic chunk: row lengths are long-tailed

template <typename T, bool kLargest>
inline bool better(T a, T b) { return kLargest ? a > b : a < b; }

template <typename T, bool kLargest>
void segment_topk_kernel(const int64_t* __restrict rowptr, const T* __restrict values, int64_t rows,
                         int64_t k, int64_t* __restrict out_pos, T* __restrict out_val) {
  if (k == 0) return;
#pragma omp parallel for schedule(dynamic, kRowChunk)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t* pos = out_pos + r * k;
    T* val = out_val + r * k;
    const int64_t begin = rowptr[r], end = rowptr[r + 1];
    int64_t kept = 0;
    T worst = T(0);  // val[k - 1] once the row has k entries (kept in a register)
    for (int64_t j = begin; j < end; ++j) {
      const T v = values[j];
      int64_t t;
      if (kept < k) {
        t = kept++;
      } else if (better<T, kLargest>(v, worst)) {
        t = k - 1;  // the current k-th drops out
      } else {
        continue;
      }
      for (; t > 0 && better<T, kLargest>(v, val[t - 1]); --t) {
        pos[t] = pos[t - 1];
        val[t] = val[t - 1];
      }
      pos[t] = j;
      val[t] = v;
      if (kept == k) worst = val[k - 1];
    }
    for (int64_t t = kept; t < k; ++t) {
      pos[t] = -1;
      val[t] = T(0);
    }
  }
}

}  // namespace

std::vector<torch::Tensor> segment_topk(const torch::Tensor& rowptr, const torch::Tensor& values,
                                        int64_t k, bool largest) {
  TORCH_CHECK(rowptr.device().is_cpu() && values.device().is_cpu(),
              "segment_topk (cpu): CPU tensors only");
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.scalar_type() == torch::kInt64 && rowptr.numel() >= 1,
              "segment_topk (cpu): rowptr must be int64 [R + 1]");
  TORCH_CHECK(values.dim() == 1, "segment_topk (cpu): values must be 1-D [nnz]");
  TORCH_CHECK(k >= 0, "segment_topk (cpu): k must be >= 0");
  auto rp = rowptr.contiguous();
  auto vals = values.contiguous();
  const int64_t rows = rp.numel() - 1;
  auto pos = torch::empty({rows, k}, rp.options());
  auto out = torch::empty({rows, k}, vals.options());
  AT_DISPATCH_FLOATING_TYPES(vals.scalar_type(), "segment_topk", [&] {
    auto run = largest ? segment_topk_kernel<scalar_t, true> : segment_topk_kernel<scalar_t, false>;
    run(rp.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), rows, k, pos.data_ptr<int64_t>(),
        out.data_ptr<scalar_t>());
  });
  return {pos, out};
}

}  // namespace cpu
}  // namespace fgd
