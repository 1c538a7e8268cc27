// CPU (OpenMP) kernel of ops.sign_noise: SimGCL's sign-aligned noise of norm eps per row and view,
// column c of a row drawn from word c % 4 of Philox (csrc/philox.h) at counter
// offsets[v] + node * ceil(d / 4) + c / 4, and added to the views' propagated deviations.
// Semantics: fastgcn_denoise/ops/sign_noise.py. All four words of a Philox call are used: the
// ten rounds cost as much as the rest of the pass, once per four uniforms instead of per one.
//
// Why a kernel: torch.rand (a sequential generator) cannot draw one row of a layer without
// drawing the whole layer, and the uniforms, their norms, the signs and the sums are five passes
// over [V, n, d] in torch; here one pass, the uniforms never stored.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "philox.h"

namespace fgd {
namespace cpu {
namespace {

template <typename T>
void sign_noise_kernel(const T* clean, const T* prop, const int64_t* nodes, const int64_t* offsets,
                       int64_t views, uint64_t seed, T eps, int64_t n, int64_t d, T* out) {
  const int64_t q = (d + 3) / 4;      // Philox counters per row and view (4 words each)
  const int64_t runs = (q + 7) / 8;   // runs of 8 counters per view: 32 uniforms each
  const int64_t vecs = views * runs;  // runs per row; run j of view j / runs at u + 32 j
#pragma omp parallel
  {
    std::vector<float> u((vecs + 3) / 4 * 128);  // whole calls of 4 runs; the tail unused
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const uint64_t node = static_cast<uint64_t>(nodes ? nodes[r] : r);
      for (int64_t j0 = 0; j0 < vecs; j0 += 4) {
        uint64_t start[4];
        for (int64_t t = 0; t < 4; ++t) {
          const int64_t j = std::min(j0 + t, vecs - 1);
          start[t] = static_cast<uint64_t>(offsets[j / runs]) + node * static_cast<uint64_t>(q) +
                     static_cast<uint64_t>(8 * (j % runs));
        }
        philox_uniform4_x4(seed, start, u.data() + 32 * j0);
      }
      const T* c = clean + r * d;
      for (int64_t v = 0; v < views; ++v) {
        const float* uv = u.data() + 32 * runs * v;
        T sq = 0;  // a vectorised sum (its order is free: the norm's rounding only)
#pragma omp simd reduction(+ : sq)
        for (int64_t k = 0; k < d; ++k) sq += static_cast<T>(uv[k]) * static_cast<T>(uv[k]);
        const T scale = eps / std::max(std::sqrt(sq), T(1e-12));  // F.normalize's clamp
        const T* p = prop ? prop + (v * n + r) * d : nullptr;
        T* o = out + (v * n + r) * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) {
          const T base = p ? p[k] : T(0);
          const T s = c[k] + base;
          const T sign = static_cast<T>((s > T(0)) - (s < T(0)));
          o[k] = base + sign * (static_cast<T>(uv[k]) * scale);
        }
      }
    }
  }
}

}  // namespace

torch::Tensor sign_noise(const torch::Tensor& clean, const c10::optional<torch::Tensor>& prop,
                         const c10::optional<torch::Tensor>& nodes, const torch::Tensor& offsets,
                         int64_t seed, double eps) {
  TORCH_CHECK(clean.device().is_cpu(), "sign_noise (cpu): clean is on ", clean.device());
  TORCH_CHECK(clean.dim() == 2 && clean.is_contiguous(), "sign_noise (cpu): clean must be a contiguous [n, d]");
  TORCH_CHECK(offsets.scalar_type() == torch::kInt64 && offsets.is_contiguous(),
              "sign_noise (cpu): offsets must be contiguous int64");
  const int64_t n = clean.size(0), d = clean.size(1), views = offsets.numel();
  if (prop) {
    TORCH_CHECK(prop->is_contiguous() && prop->scalar_type() == clean.scalar_type() && prop->dim() == 3 &&
                    prop->size(0) == views && prop->size(1) == n && prop->size(2) == d,
                "sign_noise (cpu): prop must be a contiguous [V, n, d] of clean's dtype");
  }
  if (nodes) {
    TORCH_CHECK(nodes->is_contiguous() && nodes->scalar_type() == torch::kInt64 && nodes->numel() == n,
                "sign_noise (cpu): nodes must be a contiguous int64 [n]");
  }
  auto out = torch::empty({views, n, d}, clean.options());
  AT_DISPATCH_FLOATING_TYPES(clean.scalar_type(), "sign_noise_cpu", [&] {
    sign_noise_kernel<scalar_t>(clean.data_ptr<scalar_t>(), prop ? prop->data_ptr<scalar_t>() : nullptr,
                                nodes ? nodes->data_ptr<int64_t>() : nullptr, offsets.data_ptr<int64_t>(), views,
                                static_cast<uint64_t>(seed), static_cast<scalar_t>(eps), n, d,
                                out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace cpu
}  // namespace fgd
