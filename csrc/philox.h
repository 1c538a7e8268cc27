// Philox4x32-10 counter-based RNG and the per-mode mask, shared by the CPU and CUDA kernels.
// Matches fastgcn_denoise/ops/reference.py and Triton's tl.rand(seed, counter) bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#if !defined(__CUDACC__) && defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__CUDACC__)
#define FGD_HD __host__ __device__ __forceinline__
#else
#define FGD_HD inline
#endif

namespace fgd {

// Mask modes (fastgcn_denoise/ops/reference.py MODES). Mode GATE_MODE0 + k draws the relaxed gate
// of kind k (csrc/gates.h): the kernels that include gates.h evaluate those.
enum Mode : int { ONES = 0, ARM_POS = 1, ARM_NEG = 2, BERNOULLI = 3, EXPECT = 4, HARD = 5 };
constexpr int GATE_MODE0 = 6;

FGD_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// The four output words of Philox4x32-10 with key (seed lo, seed hi), counter (c lo, c hi, 0, 0).
FGD_HD void philox_words(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDACC__)  // host compilers warn on the CUDA pragma
#pragma unroll
#endif
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
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// First output word (the one tl.rand keeps); the compiler drops the other three's stores.
FGD_HD uint32_t philox_word0(uint64_t seed, uint64_t counter) {
  uint32_t w[4];
  philox_words(seed, counter, w);
  return w[0];
}

// A 32-bit word as a uniform in [0, 1) exactly as Triton's uint_to_uniform_float: int32 view,
// fold negatives, scale.
FGD_HD float word_uniform(uint32_t word) {
  int32_t x = static_cast<int32_t>(word);
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * 4.6566127342e-10f;
}

FGD_HD float philox_uniform(uint64_t seed, uint64_t counter) {
  return word_uniform(philox_word0(seed, counter));
}

// The four uniforms of one Philox4x32-10 call (key seed, counter (c lo, c hi, 0, 0)): u[w] of
// output word w, as Triton's tl.rand4x.
FGD_HD void philox_uniform4(uint64_t seed, uint64_t counter, float* u) {
  uint32_t w[4];
  philox_words(seed, counter, w);
  for (int i = 0; i < 4; ++i) u[i] = word_uniform(w[i]);
}

// Host only: the uniforms of the kPhiloxBlock consecutive counters first, first + 1, ... (same bits
// as philox_uniform). With AVX2 a block runs as 4 vectors of 8 lanes: the 10 rounds are a chain of
// dependent multiplies, and 4 independent chains hide their latency (12% faster than 2 on Zen).
// Compilers do not vectorise the scalar loop's 32x32->64-bit products well (3x slower on Zen).
#if !defined(__CUDACC__)
constexpr int kPhiloxBlock = 32;

#if defined(__AVX2__)
// (hi, lo) 32-bit words of a * c in 8 lanes: vpmuludq multiplies the even lanes, so the odd
// lanes go through a 64-bit shift and the halves are blended back.
inline void mulhilo_x8(__m256i a, __m256i c, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(c, a);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), a);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// 8 consecutive counters first .. first + 7 as the (c0, c1) words of one vector, c2 = c3 = 0.
inline void philox_counters_x8(uint64_t first, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3) {
  const uint32_t lo0 = static_cast<uint32_t>(first), hi0 = static_cast<uint32_t>(first >> 32);
  if (lo0 <= 0xFFFFFFFFu - 7) {  // the high word is the same in all lanes
    *c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(lo0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    *c1 = _mm256_set1_epi32(static_cast<int>(hi0));
  } else {  // the low word wraps inside the run
    alignas(32) uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; ++l) {
      const uint64_t c = first + static_cast<uint64_t>(l);
      lo[l] = static_cast<uint32_t>(c);
      hi[l] = static_cast<uint32_t>(c >> 32);
    }
    *c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    *c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
  }
  *c2 = *c3 = _mm256_setzero_si256();
}

// The 10 Philox-4x32 rounds on N vectors of 8 counters at once (words c0..c3 in place).
template <int N>
inline void philox_rounds_x8(uint64_t seed, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3) {
  const __m256i ma = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i mb = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int v = 0; v < N; ++v) {
      __m256i hi_b, lo_b, hi_a, lo_a;
      mulhilo_x8(mb, c2[v], &hi_b, &lo_b);
      mulhilo_x8(ma, c0[v], &hi_a, &lo_a);
      c0[v] = _mm256_xor_si256(_mm256_xor_si256(hi_b, c1[v]), key0);
      c1[v] = lo_b;
      c2[v] = _mm256_xor_si256(_mm256_xor_si256(hi_a, c3[v]), key1);
      c3[v] = lo_a;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// x < 0 -> ~x is x ^ (x >> 31) (arithmetic shift); then float32(x) * scale, as tl.rand.
inline __m256 philox_to_uniform_x8(__m256i x) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_xor_si256(x, _mm256_srai_epi32(x, 31))),
                       _mm256_set1_ps(4.6566127342e-10f));
}

inline void philox_uniform_block(uint64_t seed, uint64_t first, float* u) {
  constexpr int kVecs = kPhiloxBlock / 8;
  __m256i c0[kVecs], c1[kVecs], c2[kVecs], c3[kVecs];
  for (int v = 0; v < kVecs; ++v) philox_counters_x8(first + 8 * v, c0 + v, c1 + v, c2 + v, c3 + v);
  philox_rounds_x8<kVecs>(seed, c0, c1, c2, c3);
  for (int v = 0; v < kVecs; ++v) _mm256_storeu_ps(u + 8 * v, philox_to_uniform_x8(c0[v]));
}

// Host only: all four words of 4 runs of 8 consecutive counters, start[v] .. start[v] + 7, as
// u[32 v + 4 l + w] = philox_uniform4(seed, start[v] + l)[w] (the words of a counter adjacent,
// as tl.rand4x interleaved). Four uniforms per call of the 10 rounds instead of one.
inline void philox_uniform4_x4(uint64_t seed, const uint64_t* start, float* u) {
  __m256i c0[4], c1[4], c2[4], c3[4];
  for (int v = 0; v < 4; ++v) philox_counters_x8(start[v], c0 + v, c1 + v, c2 + v, c3 + v);
  philox_rounds_x8<4>(seed, c0, c1, c2, c3);
  for (int v = 0; v < 4; ++v) {
    // 4 words x 8 lanes -> 8 lanes x 4 words: the 4x8 transpose of unpack, shuffle, permute.
    const __m256 a0 = philox_to_uniform_x8(c0[v]), a1 = philox_to_uniform_x8(c1[v]);
    const __m256 a2 = philox_to_uniform_x8(c2[v]), a3 = philox_to_uniform_x8(c3[v]);
    const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    float* o = u + 32 * v;
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(s0, s1, 0x20));       // lanes 0, 1
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(s2, s3, 0x20));   // lanes 2, 3
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(s0, s1, 0x31));  // lanes 4, 5
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(s2, s3, 0x31));  // lanes 6, 7
  }
}
#else
inline void philox_uniform_block(uint64_t seed, uint64_t first, float* u) {
  for (int l = 0; l < kPhiloxBlock; ++l) u[l] = philox_uniform(seed, first + static_cast<uint64_t>(l));
}

inline void philox_uniform4_x4(uint64_t seed, const uint64_t* start, float* u) {
  for (int v = 0; v < 4; ++v) {
    for (int l = 0; l < 8; ++l) philox_uniform4(seed, start[v] + static_cast<uint64_t>(l), u + 32 * v + 4 * l);
  }
}
#endif
#endif  // !__CUDACC__

// Of the non-gate modes (gates.h: gate_needs_uniform for the gate kinds).
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
