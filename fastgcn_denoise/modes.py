"""The mask and gate modes every backend numbers the same way (the floor: kernels, the
compiled code and the ops all read them from here)."""

# One definition of the relaxed Bernoulli gates (ops/gates.py documents them); csrc/gates.h and
# kernels/gates.py implement the same formulas for the compiled and Triton kernels.
GATE_KINDS = ("concrete", "concrete_st", "hard_concrete", "hard_concrete_mean")
GATE_ID = {k: i for i, k in enumerate(GATE_KINDS)}
# Uniforms are clamped to [U_EPS, 1 - U_EPS] before the logistic transform, so the noise
# log u - log(1 - u) stays finite (|noise| <= 16.1); tl.rand can return exactly 0.
GATE_U_EPS = 1e-7

# Propagation mask modes: the binary/probability masks, then the gate kinds (mode GATE_MODE0 + k
# draws gate kind k). The compiled and Triton kernels use the same numbering.
MASK_MODES = ("ones", "arm_pos", "arm_neg", "bernoulli", "expect", "hard")
MODES = MASK_MODES + GATE_KINDS
MODE_ID = {m: i for i, m in enumerate(MODES)}
GATE_MODE0 = len(MASK_MODES)
# Modes whose mask is differentiable in the logits (autograd gives them a logit gradient);
# concrete_st's is the straight-through (relaxed) derivative.
DIFFERENTIABLE_MODES = ("expect",) + GATE_KINDS
