// The one binding file of fastgcn_denoise._C: declares each op's per-device implementations
// (csrc/cpu/*.cpp, csrc/cuda/*.cu) and dispatches on the tensors' device.
#include <torch/extension.h>

#include <vector>

using OptTensor = c10::optional<torch::Tensor>;
using torch::Tensor;

// The same declarations for both devices (edge_weights takes the device to allocate on).
#define FGD_DECLARE_MASKED_SPMM(NS)                                                       \
  namespace fgd {                                                                                   \
  namespace NS {                                                                                    \
  std::vector<Tensor> edge_weights(const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, \
                                   const std::vector<int64_t>&, int64_t, int64_t, int64_t, at::ScalarType, \
                                   const torch::Device&, double, double, double, bool);               \
  std::vector<Tensor> degree_rsqrt(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool); \
  Tensor spmm(const Tensor&, const Tensor&, const OptTensor&, const Tensor&, const OptTensor&,        \
              const OptTensor&, const Tensor&, const OptTensor&);                                    \
  Tensor edge_grad(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,         \
                   const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,   \
                   const Tensor&, const Tensor&, bool);                                              \
  }                                                                                                 \
  }

FGD_DECLARE_MASKED_SPMM(cpu)
#ifdef WITH_CUDA
FGD_DECLARE_MASKED_SPMM(cuda)
#endif

// Ops with CPU kernels only (on GPUs their triton kernels run; spgemm's GPU path is cuSPARSE
// through torch.sparse, cooccurrence's too; spmm_backward is the fused spmm + spmm + edge_grad of
// masked_spmm.cpp): csrc/cpu/arm_grad.cpp, sddmm.cpp, gates.cpp,
// segment_topk.cpp, cooccurrence.cpp, dot_logsumexp.cpp, spgemm.cpp, csr_spmm.cpp, sign_noise.cpp.
namespace fgd {
namespace cpu {
Tensor csr_spmm(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
Tensor sign_noise(const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, int64_t, double);
Tensor arm_grad(const Tensor&, const OptTensor&, const OptTensor&, int64_t, int64_t, double, bool);
Tensor sddmm(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
Tensor sddmm_row_standardised(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double);
std::vector<Tensor> spmm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, bool, bool, bool);
std::vector<Tensor> gate(const Tensor&, int64_t, int64_t, int64_t, double, double, double, bool);
std::vector<Tensor> cosine_attention_forward(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                             const Tensor&, const Tensor&, const Tensor&, double);
Tensor cosine_attention_backward(const Tensor&, const Tensor&, const OptTensor&, const Tensor&, const OptTensor&,
                                 const Tensor&, const Tensor&);
std::vector<Tensor> all_pairs_forward(const Tensor&, const Tensor&, const std::vector<Tensor>&,
                                      int64_t, int64_t, int64_t, double, double, double, double, bool);
std::vector<Tensor> all_pairs_backward(const Tensor&, const Tensor&, const std::vector<Tensor>&,
                                       int64_t, int64_t, int64_t, double, double, double, double, bool,
                                       const Tensor&, const Tensor&, const Tensor&, const Tensor&);
std::vector<Tensor> segment_topk(const Tensor&, const Tensor&, int64_t, bool);
std::vector<Tensor> cooccurrence(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                                 int64_t, int64_t, bool, const OptTensor&);
Tensor dot_logsumexp_fwd(const Tensor&, const Tensor&, double, const OptTensor&, const OptTensor&, int64_t);
std::vector<Tensor> dot_logsumexp_bwd(const Tensor&, const Tensor&, double, const OptTensor&, const OptTensor&,
                                      int64_t, const Tensor&, const Tensor&, bool, bool);
std::vector<Tensor> spgemm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, int64_t, bool);
}  // namespace cpu
}  // namespace fgd

namespace {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

void check_contiguous(std::initializer_list<const Tensor*> ts, std::initializer_list<const OptTensor*> opts) {
  for (auto t : ts) TORCH_CHECK(t->is_contiguous(), "fastgcn_denoise._C expects contiguous tensors");
  for (auto t : opts) TORCH_CHECK(!*t || (*t)->is_contiguous(), "fastgcn_denoise._C expects contiguous tensors");
}

// Runs the CUDA implementation for CUDA tensors (when compiled in), else the CPU one.
#ifdef WITH_CUDA
#define FGD_DISPATCH(device, cpu_call, cuda_call) ((device).is_cuda() ? (cuda_call) : (cpu_call))
#else
#define FGD_DISPATCH(device, cpu_call, cuda_call)                                   \
  ([&] {                                                                            \
    TORCH_CHECK(!(device).is_cuda(), "fastgcn_denoise._C was built without CUDA"); \
    return cpu_call;                                                                \
  }())
#endif

std::vector<Tensor> edge_weights(const OptTensor& phi, const OptTensor& p, const OptTensor& q,
                                 const OptTensor& omega, const std::vector<int64_t>& modes, int64_t seed,
                                 int64_t offset, int64_t num_edges, at::ScalarType dtype,
                                 const torch::Device& device, double tau, double gamma, double zeta,
                                 bool need_grad) {
  check_contiguous({}, {&phi, &p, &q, &omega});
  return FGD_DISPATCH(device,
                      fgd::cpu::edge_weights(phi, p, q, omega, modes, seed, offset, num_edges, dtype, device,
                                             tau, gamma, zeta, need_grad),
                      fgd::cuda::edge_weights(phi, p, q, omega, modes, seed, offset, num_edges, dtype, device,
                                              tau, gamma, zeta, need_grad));
}

std::vector<Tensor> degree_rsqrt(const Tensor& rowptr_u, const Tensor& rowptr_i, const Tensor& perm,
                                 const Tensor& w, bool self_loop) {
  check_contiguous({&rowptr_u, &rowptr_i, &perm, &w}, {});
  return FGD_DISPATCH(w.device(), fgd::cpu::degree_rsqrt(rowptr_u, rowptr_i, perm, w, self_loop),
                      fgd::cuda::degree_rsqrt(rowptr_u, rowptr_i, perm, w, self_loop));
}

Tensor spmm(const Tensor& rowptr, const Tensor& col, const OptTensor& eid, const Tensor& w,
            const OptTensor& r_row, const OptTensor& r_col, const Tensor& x, const OptTensor& x_self) {
  check_contiguous({&rowptr, &col, &w, &x}, {&eid, &r_row, &r_col, &x_self});
  return FGD_DISPATCH(x.device(), fgd::cpu::spmm(rowptr, col, eid, w, r_row, r_col, x, x_self),
                      fgd::cuda::spmm(rowptr, col, eid, w, r_row, r_col, x, x_self));
}

Tensor edge_grad(const Tensor& rowptr_u, const Tensor& col_item, const Tensor& rowptr_i, const Tensor& col_user,
                 const Tensor& perm, const Tensor& w, const OptTensor& r_u, const OptTensor& r_i,
                 const Tensor& x_u, const Tensor& x_i, const Tensor& gy_u, const Tensor& gy_i, bool self_loop) {
  check_contiguous({&rowptr_u, &col_item, &rowptr_i, &col_user, &perm, &w, &x_u, &x_i, &gy_u, &gy_i}, {&r_u, &r_i});
  return FGD_DISPATCH(
      w.device(),
      fgd::cpu::edge_grad(rowptr_u, col_item, rowptr_i, col_user, perm, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop),
      fgd::cuda::edge_grad(rowptr_u, col_item, rowptr_i, col_user, perm, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgcn_denoise compiled kernels (CPU/OpenMP; CUDA when built with it)";
  m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
  m.def("edge_weights", &edge_weights,
        "[w [M, E] = mask(mode; phi, p = sigmoid(phi), q = sigmoid(-phi), Philox u) * omega, "
        "and with need_grad dw/dphi [M, E]]");
  m.def("degree_rsqrt", &degree_rsqrt, "(r_u [M, U], r_i [M, I]) of the weighted degrees");
  m.def("spmm", &spmm, "y [M, R, d]: row-parallel CSR product with per-edge weights and renormalisation");
  m.def("edge_grad", &edge_grad, "dL/dw [E] through the degree renormalisation");
  m.def("spmm_backward", &fgd::cpu::spmm_backward,
        "[dL/dx_user | None, dL/dx_item | None, dL/dw] of one propagation in two passes (CPU tensors)");
  m.def("arm_grad", &fgd::cpu::arm_grad,
        "ARM / DisARM logit gradient from the regenerated Philox uniforms (CPU tensors)");
  m.def("csr_spmm", &fgd::cpu::csr_spmm,
        "y [R, d] = A x for a CSR A with its values in storage order (CPU tensors)");
  m.def("sign_noise", &fgd::cpu::sign_noise,
        "[V, n, d] views' deviations plus SimGCL's sign-aligned Philox noise (CPU tensors)");
  m.def("sddmm", &fgd::cpu::sddmm, "out [nnz] = <a[row], b[col]> on a CSR pattern (CPU tensors)");
  m.def("sddmm_row_standardised", &fgd::cpu::sddmm_row_standardised,
        "sddmm's scores standardised within each CSR row (CPU tensors)");
  m.def("gate", &fgd::cpu::gate, "relaxed Bernoulli gates [z, dz/dphi] from Philox uniforms (CPU tensors)");
  m.def("cosine_attention_forward", &fgd::cpu::cosine_attention_forward,
        "[y, alpha, cos]: cosine SDDMM, row softmax and aggregation per CSR row (CPU tensors)");
  m.def("cosine_attention_backward", &fgd::cpu::cosine_attention_backward,
        "gs [E]: the row softmax backward of cosine_attention (CPU tensors)");
  m.def("all_pairs_forward", &fgd::cpu::all_pairs_forward,
        "L0-SIGN all-pairs pass: [pooled, l0, l2, kept, counts] (CPU tensors)");
  m.def("all_pairs_backward", &fgd::cpu::all_pairs_backward,
        "gradients of the all-pairs pass: [node_emb, edge_emb, 8 weights] (CPU tensors)");
  m.def("segment_topk", &fgd::cpu::segment_topk,
        "[pos, val] of each CSR row's k largest/smallest values (CPU tensors)");
  m.def("cooccurrence", &fgd::cpu::cooccurrence,
        "[rowptr, col, value]: rows [begin, end) of R^T R, optionally scaled (CPU tensors)");
  m.def("dot_logsumexp_fwd", &fgd::cpu::dot_logsumexp_fwd,
        "lse [B] of <q_b, k_j> / tau over all keys (or a positive set), tiled (CPU tensors)");
  m.def("dot_logsumexp_bwd", &fgd::cpu::dot_logsumexp_bwd, "[dL/dq, dL/dk] of dot_logsumexp (CPU tensors)");
  m.def("spgemm", &fgd::cpu::spgemm, "[rowptr, col, val] of C = A B (+ I), sorted CSR (CPU tensors)");
}
