// CPU (OpenMP) segmented top-k: per CSR row, the positions and values of its k largest (or
// smallest) entries, best first, ties to the lower position; pads are position -1, value 0.
// Semantics: ops/segment_topk.py (reference). Row-parallel: each output row is written by one
// thread; the order is total (value, then position), so the result is deterministic.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace fgd {
namespace cpu {
namespace {

constexpr int kRowChunk = 16;  // rows per dynamic chunk: row lengths are long-tailed

template <typename T, bool kLargest>
void segment_topk_kernel(const int64_t* rowptr, const T* values, int64_t rows, int64_t k,
                         int64_t* out_pos, T* out_val) {
#pragma omp parallel
  {
    std::vector<int64_t> buf;  // this thread's candidate positions of one row
#pragma omp for schedule(dynamic, kRowChunk)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t begin = rowptr[r], len = rowptr[r + 1] - begin;
      const int64_t take = std::min(k, len);
      // a before b: better value, then lower position (a strict total order on positions).
      auto better = [values](int64_t a, int64_t b) {
        const T va = values[a], vb = values[b];
        if (va != vb) return kLargest ? va > vb : va < vb;
        return a < b;
      };
      buf.resize(static_cast<size_t>(len));
      for (int64_t j = 0; j < len; ++j) buf[j] = begin + j;
      if (take < len) std::nth_element(buf.begin(), buf.begin() + take, buf.end(), better);
      std::sort(buf.begin(), buf.begin() + take, better);
      int64_t* pos = out_pos + r * k;
      T* val = out_val + r * k;
      for (int64_t t = 0; t < take; ++t) {
        pos[t] = buf[t];
        val[t] = values[buf[t]];
      }
      for (int64_t t = take; t < k; ++t) {
        pos[t] = -1;
        val[t] = T(0);
      }
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
