// Vector variants of the libm functions the gates use (csrc/gates.h: exp, log, log1p), so that a
// `#pragma omp simd` loop over gate_eval vectorises instead of making one scalar libm call per
// edge and function (measured 50-80x slower on Gowalla's 810k edges, AMD EPYC, AVX-512).
//
// glibc's libmvec has them (expf/logf since 2.22, log1pf since 2.35) but <math.h> declares them
// only under -ffast-math; declaring the simd attribute here lets GCC call them without fast-math
// semantics. GCC also needs -fno-math-errno and -fno-trapping-math (setup.py) to vectorise the
// calls and the gates' selects; neither changes a value. libmvec is accurate to 4 ulp, within
// the float32 rounding the tests allow for the continuous gates. Elsewhere (not GCC, not glibc
// on x86-64, older glibc) nothing is declared and the loops stay scalar: slower, same results to
// rounding.
#pragma once
#include <cmath>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
#define FGD_VECTOR_MATH 1
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float logf(float) noexcept;
__attribute__((simd("notinbranch"))) float log1pf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) double log(double) noexcept;
__attribute__((simd("notinbranch"))) double log1p(double) noexcept;
}
#endif
#endif
