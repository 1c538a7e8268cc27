// CPU (OpenMP) kernel of ops.sign_noise: SimGCL's sign-aligned noise of norm eps per row and view,
// drawn from Philox (csrc/philox.h) at counter offsets[v] + node * d + c, and added to the
// views' propagated deviations. Semantics: fastgcn_denoise/ops/sign_noise.py.
//
// Why a kernel: torch.rand (a sequential generator) cannot draw one row of a layer without
// drawing the whole layer, and the uniforms, their norms, the signs and the sums are five passes
// over [n, V d] in torch; here one pass, the uniforms never stored.
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
  const int64_t padded = (d + kPhiloxBlock - 1) / kPhiloxBlock * kPhiloxBlock;
#pragma omp parallel
  {
    std::vector<float> u(padded);  // whole Philox blocks; the tail past d is not used
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const uint64_t node = static_cast<uint64_t>(nodes ? nodes[r] : r);
      const T* c = clean + r * d;
      for (int64_t v = 0; v < views; ++v) {
        const uint64_t first = static_cast<uint64_t>(offsets[v]) + node * static_cast<uint64_t>(d);
        for (int64_t k0 = 0; k0 < d; k0 += kPhiloxBlock) {
          philox_uniform_block(seed, first + static_cast<uint64_t>(k0), u.data() + k0);
        }
        T sq = 0;
        for (int64_t k = 0; k < d; ++k) sq += static_cast<T>(u[k]) * static_cast<T>(u[k]);
        const T scale = eps / std::max(std::sqrt(sq), T(1e-12));  // F.normalize's clamp
        const T* p = prop ? prop + (r * views + v) * d : nullptr;
        T* o = out + (r * views + v) * d;
        for (int64_t k = 0; k < d; ++k) {
          const T base = p ? p[k] : T(0);
          const T s = c[k] + base;
          const T sign = static_cast<T>((s > T(0)) - (s < T(0)));
          o[k] = base + sign * (static_cast<T>(u[k]) * scale);
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
    TORCH_CHECK(prop->is_contiguous() && prop->scalar_type() == clean.scalar_type() && prop->size(0) == n &&
                    prop->size(1) == views * d,
                "sign_noise (cpu): prop must be a contiguous [n, V d] of clean's dtype");
  }
  if (nodes) {
    TORCH_CHECK(nodes->is_contiguous() && nodes->scalar_type() == torch::kInt64 && nodes->numel() == n,
                "sign_noise (cpu): nodes must be a contiguous int64 [n]");
  }
  auto out = torch::empty({n, views * d}, clean.options());
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
