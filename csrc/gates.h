// Relaxed Bernoulli gates from a uniform, for every compiled kernel that draws them (the gate op,
// masked propagation modes, L0-SIGN's all-pairs kernel). Semantics and the kind numbering:
// fastgcn_denoise/ops/reference.py (gate_from_uniforms) and ops/gates.py.
#pragma once
#include <cmath>

#include "philox.h"

namespace fgd {

enum GateKind : int { CONCRETE = 0, CONCRETE_ST = 1, HARD_CONCRETE = 2, HARD_CONCRETE_MEAN = 3 };

constexpr float kGateUEps = 1e-7f;  // uniforms clamped to [eps, 1 - eps]: finite logistic noise

template <typename T>
struct GateValue {
  T z;   // the gate
  T dz;  // dz/dphi
};

// Gate `kind` for logit phi and uniform u (ignored by HARD_CONCRETE_MEAN); tau the temperature
// (hard concrete's beta), [gamma, zeta] the stretch interval of the hard concrete.
template <typename T>
FGD_HD GateValue<T> gate_eval(int kind, T phi, float u, T tau, T gamma, T zeta) {
  using std::exp;
  using std::log;
  using std::log1p;
  if (kind == HARD_CONCRETE_MEAN) {
    const T p = T(1) / (T(1) + exp(-phi));
    const T st = p * (zeta - gamma) + gamma;
    const bool inside = st > T(0) && st < T(1);
    return {st < T(0) ? T(0) : (st > T(1) ? T(1) : st), inside ? (zeta - gamma) * p * (T(1) - p) : T(0)};
  }
  const T uc = static_cast<T>(u < kGateUEps ? kGateUEps : (u > 1.0f - kGateUEps ? 1.0f - kGateUEps : u));
  const T noise = log(uc) - log1p(-uc);
  const T s = T(1) / (T(1) + exp(-(phi + noise) / tau));
  const T ds = s * (T(1) - s) / tau;
  if (kind == CONCRETE) return {s, ds};
  if (kind == CONCRETE_ST) {
    // 1[u > sigmoid(-phi)] = 1[phi + noise > 0]: the arm_pos comparison (an exact Bernoulli draw).
    const T q = T(1) / (T(1) + exp(phi));
    return {static_cast<T>(u) > q ? T(1) : T(0), ds};
  }
  const T st = s * (zeta - gamma) + gamma;  // HARD_CONCRETE
  const bool inside = st > T(0) && st < T(1);
  return {st < T(0) ? T(0) : (st > T(1) ? T(1) : st), inside ? (zeta - gamma) * ds : T(0)};
}

FGD_HD bool gate_needs_uniform(int kind) { return kind != HARD_CONCRETE_MEAN; }

}  // namespace fgd
