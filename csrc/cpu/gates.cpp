// CPU (OpenMP) kernel of ops.gate: relaxed Bernoulli gates (csrc/gates.h) element-wise over the
// flattened logits, flat index n drawing the Philox uniform of counter offset + n.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "gates.h"

namespace fgd {
namespace cpu {
namespace {

template <typename T>
void gate_kernel(const T* phi, int kind, uint64_t seed, uint64_t offset, T tau, T gamma, T zeta,
                 int64_t n, T* z, T* dz) {
  const int64_t blocks = (n + kPhiloxBlock - 1) / kPhiloxBlock;
  const bool need_u = gate_needs_uniform(kind);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kPhiloxBlock;
    const int count = static_cast<int>(std::min<int64_t>(kPhiloxBlock, n - i0));
    float u[kPhiloxBlock] = {0};
    if (need_u) philox_uniform_block(seed, offset + static_cast<uint64_t>(i0), u);
    for (int l = 0; l < count; ++l) {
      const GateValue<T> g = gate_eval<T>(kind, phi[i0 + l], u[l], tau, gamma, zeta);
      z[i0 + l] = g.z;
      if (dz) dz[i0 + l] = g.dz;
    }
  }
}

}  // namespace

std::vector<torch::Tensor> gate(const torch::Tensor& logits, int64_t kind, int64_t seed, int64_t offset,
                                double tau, double gamma, double zeta, bool need_grad) {
  TORCH_CHECK(logits.device().is_cpu(), "gate (cpu): logits must be a CPU tensor");
  TORCH_CHECK(kind >= 0 && kind <= HARD_CONCRETE_MEAN, "gate (cpu): unknown gate kind ", kind);
  auto phi = logits.contiguous();
  auto z = torch::empty_like(phi);
  auto dz = need_grad ? torch::empty_like(phi) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(phi.scalar_type(), "gate_cpu", [&] {
    gate_kernel<scalar_t>(phi.data_ptr<scalar_t>(), static_cast<int>(kind), static_cast<uint64_t>(seed),
                          static_cast<uint64_t>(offset), static_cast<scalar_t>(tau),
                          static_cast<scalar_t>(gamma), static_cast<scalar_t>(zeta), phi.numel(),
                          z.data_ptr<scalar_t>(), need_grad ? dz.data_ptr<scalar_t>() : nullptr);
  });
  if (need_grad) return {z, dz};
  return {z};
}

}  // namespace cpu
}  // namespace fgd
