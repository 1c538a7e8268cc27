// CPU (OpenMP) kernel of the ARM / DisARM logit gradient. Semantics: ops/arm_grad.py (reference).
// Element-wise over the flattened logits: flat index n uses the Philox uniform of counter
// offset + n (philox.h), the stream the propagation drew its masks from.
#include <torch/extension.h>

#include <algorithm>

#include "philox.h"

namespace fgd {
namespace cpu {
namespace {

// ARM: df (u - 1/2). DisARM: df/2 (b1 - b2) max(p, q), b1 = 1[u > q], b2 = 1[u < p], with
// p = sigmoid(phi), q = sigmoid(-phi) from torch (the values the cpu propagation's masks use).
// Uniforms come kPhiloxBlock at a time from the vectorised generator (the scalar one per element
// made this kernel ~4x slower than reading stored uniforms).
template <typename T>
void arm_grad_kernel(const T* p, const T* q, uint64_t seed, uint64_t offset, double df,
                     int64_t n, T* out) {
  const T d = static_cast<T>(df), half_d = static_cast<T>(df * 0.5);
  const int64_t blocks = (n + kPhiloxBlock - 1) / kPhiloxBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kPhiloxBlock;
    const int count = static_cast<int>(std::min<int64_t>(kPhiloxBlock, n - i0));
    float u[kPhiloxBlock];
    philox_uniform_block(seed, offset + static_cast<uint64_t>(i0), u);
    T* o = out + i0;
    if (p == nullptr) {
      for (int l = 0; l < count; ++l) o[l] = d * (static_cast<T>(u[l]) - T(0.5));
    } else {
      const T* pb = p + i0;
      const T* qb = q + i0;
      for (int l = 0; l < count; ++l) {
        const T ul = static_cast<T>(u[l]);
        const T sign = (ul > qb[l] ? T(1) : T(0)) - (ul < pb[l] ? T(1) : T(0));
        o[l] = half_d * sign * std::max(pb[l], qb[l]);
      }
    }
  }
}

}  // namespace

// logits: only its shape/dtype are used (ARM needs no sigmoid); p, q: given iff disarm.
torch::Tensor arm_grad(const torch::Tensor& logits, const c10::optional<torch::Tensor>& p,
                       const c10::optional<torch::Tensor>& q, int64_t seed, int64_t offset,
                       double df, bool disarm) {
  TORCH_CHECK(logits.device().is_cpu(), "arm_grad (cpu): logits must be a CPU tensor");
  TORCH_CHECK(!disarm || (p && q), "arm_grad (cpu): disarm needs p = sigmoid(phi) and q = sigmoid(-phi)");
  auto out = torch::empty_like(logits, logits.options().memory_format(at::MemoryFormat::Contiguous));
  torch::Tensor pc, qc;
  if (disarm) {
    pc = p->to(logits.scalar_type()).contiguous();
    qc = q->to(logits.scalar_type()).contiguous();
    TORCH_CHECK(pc.numel() == logits.numel() && qc.numel() == logits.numel(),
                "arm_grad (cpu): p and q must have one value per logit");
  }
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "arm_grad", [&] {
    arm_grad_kernel<scalar_t>(disarm ? pc.data_ptr<scalar_t>() : nullptr,
                              disarm ? qc.data_ptr<scalar_t>() : nullptr,
                              static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), df,
                              logits.numel(), out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace cpu
}  // namespace fgd
