// Philox4x32-10 counter-based RNG and the per-mode mask, shared by the CPU and CUDA kernels.
// Matches fastgcn_denoise/ops/reference.py and Triton's tl.rand(seed, counter) bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FGD_HD __host__ __device__ __forceinline__
#else
#define FGD_HD inline
#endif

namespace fgd {

enum Mode : int { ONES = 0, ARM_POS = 1, ARM_NEG = 2, BERNOULLI = 3, EXPECT = 4, HARD = 5 };

FGD_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// First output word of Philox4x32-10 with key (seed lo, seed hi), counter (c lo, c hi, 0, 0).
FGD_HD uint32_t philox_word0(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint32_t hi_b, hi_a;
    const uint32_t lo_b = mulhilo(0xCD9E8D57u, c2, &hi_b);
    const uint32_t lo_a = mulhilo(0xD2511F53u, c0, &hi_a);
    c0 = hi_b ^ c1 ^ k0;
    c1 = lo_b;
    c2 = hi_a ^ c3 ^ k1;
    c3 = lo_a;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// Uniform in [0, 1) exactly as Triton's uint_to_uniform_float: int32 view, fold negatives, scale.
FGD_HD float philox_uniform(uint64_t seed, uint64_t counter) {
  int32_t x = static_cast<int32_t>(philox_word0(seed, counter));
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * 4.6566127342e-10f;
}

FGD_HD bool mode_needs_uniform(int mode) {
  return mode == ARM_POS || mode == ARM_NEG || mode == BERNOULLI;
}

// z for one mode from p = sigmoid(phi) and q = sigmoid(-phi) (computed by the caller, so that the
// CPU path can use torch's vectorised sigmoid, the very function the reference uses).
template <typename T>
FGD_HD T mask_from_probs(int mode, T p, T q, float u) {
  switch (mode) {
    case ARM_POS: return static_cast<T>(u) > q ? T(1) : T(0);
    case ARM_NEG:
    case BERNOULLI: return static_cast<T>(u) < p ? T(1) : T(0);
    case EXPECT: return p;
    case HARD: return p > T(0.5) ? p : T(0);
    default: return T(1);
  }
}

// z for one mode from the logit (GPU kernels: the sigmoid is computed in registers).
template <typename T>
FGD_HD T mask_value(int mode, T phi, float u) {
  const T p = T(1) / (T(1) + exp(-phi)), q = T(1) / (T(1) + exp(phi));
  return mask_from_probs<T>(mode, p, q, u);
}

}  // namespace fgd
