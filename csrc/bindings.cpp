// The one binding file of fastgcn_denoise._C: declares each op's device implementations and
// dispatches on the tensors' device.
#include <torch/extension.h>

#include <vector>

namespace fgd {
namespace cpu {
torch::Tensor edge_weights(const c10::optional<torch::Tensor>&, const c10::optional<torch::Tensor>&,
                           const c10::optional<torch::Tensor>&,
                           const std::vector<int64_t>&, int64_t, int64_t, int64_t, at::ScalarType);
std::vector<torch::Tensor> degree_rsqrt(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                        const torch::Tensor&, bool);
torch::Tensor spmm(const torch::Tensor&, const torch::Tensor&, const c10::optional<torch::Tensor>&,
                   const torch::Tensor&, const c10::optional<torch::Tensor>&,
                   const c10::optional<torch::Tensor>&, const torch::Tensor&,
                   const c10::optional<torch::Tensor>&);
torch::Tensor edge_grad(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                        const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                        const c10::optional<torch::Tensor>&, const c10::optional<torch::Tensor>&,
                        const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                        const torch::Tensor&, bool);
}  // namespace cpu
}  // namespace fgd

static bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgcn_denoise compiled kernels (CPU/OpenMP; CUDA when built with it)";
  m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
  m.def("edge_weights", &fgd::cpu::edge_weights, "w [M, E] = mask(mode; p = sigmoid(phi), q = sigmoid(-phi), Philox u) * omega");
  m.def("degree_rsqrt", &fgd::cpu::degree_rsqrt, "(r_u [M, U], r_i [M, I])");
  m.def("spmm", &fgd::cpu::spmm, "y [M, R, d] masked CSR product");
  m.def("edge_grad", &fgd::cpu::edge_grad, "dL/dw [E]");
}
