// CUDA kernels of the masked, renormalised propagation; same primitives and semantics as
// csrc/cpu/masked_spmm.cpp and ops/reference.py. One warp per CSR row: lanes split the
// embedding dimension for products and the edges for sums. No atomics: deterministic.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <vector>

#include "gates.h"
#include "philox.h"

namespace fgd {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

inline int row_blocks(int64_t rows) {
  return static_cast<int>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

template <typename T>
const T* ptr_or_null(const c10::optional<torch::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

// Mode ids passed by value (kernel argument): no per-call host-to-device copy.
constexpr int kMaxModes = 8;
struct ModeList {
  int id[kMaxModes];
  int count;
};

// w[m, e] = z_m * omega_e and, with dout, dw/dphi = omega dz_m/dphi (expect and the gate modes;
// 0 for the others). The gate modes (GATE_MODE0 + kind) evaluate gates.h's gate_eval on phi;
// concrete_st's binary value is arm_pos's comparison with torch's q (as the CPU kernel).
template <typename T>
__global__ void edge_weights_kernel(const T* phi, const T* p, const T* q, const T* omega, ModeList modes,
                                    bool need_u, uint64_t seed, uint64_t offset, int64_t num_edges, T tau,
                                    T gamma, T zeta, T* out, T* dout) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= num_edges) return;
  const float u = need_u ? philox_uniform(seed, offset + static_cast<uint64_t>(e)) : 0.f;
  const T pe = p ? p[e] : T(1), qe = q ? q[e] : T(0), om = omega ? omega[e] : T(1);
  for (int m = 0; m < modes.count; ++m) {
    const int mode = modes.id[m];
    T z, dz = T(0);
    if (mode >= GATE_MODE0) {
      const GateValue<T> g = gate_eval<T>(mode - GATE_MODE0, phi[e], u, tau, gamma, zeta);
      z = mode == GATE_MODE0 + CONCRETE_ST ? mask_from_probs<T>(ARM_POS, pe, qe, u) : g.z;
      dz = g.dz;
    } else {
      z = mask_from_probs<T>(mode, pe, qe, u);
      if (mode == EXPECT) dz = pe * (T(1) - pe);
    }
    out[m * num_edges + e] = z * om;
    if (dout) dout[m * num_edges + e] = dz * om;
  }
}

template <typename T>
__global__ void degree_rsqrt_kernel(const int64_t* rowptr, const int64_t* eid, const T* w, T one,
                                    int64_t num_rows, T* r) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= num_rows) return;
  T s = 0;
  for (int64_t j = rowptr[row] + lane; j < rowptr[row + 1]; j += kWarp) s += w[eid ? eid[j] : j];
  s = warp_sum(s) + one;
  if (lane == 0) r[row] = s > T(0) ? rsqrt(s) : T(0);
}

// Columns per lane in one pass over a row's edges: a pass covers kWarp * kColsPerLane = 128
// columns, so for d <= 128 each edge's index and coefficient are read once.
constexpr int kColsPerLane = 4;

// y[m, r] = r_row[m, r] sum_j w[m, eid_j] r_col[m, col_j] x[col_j] (+ r_row^2 x_self[r]).
// Lane l owns columns k0 + l + 32 q (coalesced gathers of x rows). The lanes load 32 edges'
// columns and coefficients at once and broadcast them with shuffles; the dual (M = 2) reads each
// x element once for both outputs.
template <typename T, int M>
__global__ void spmm_kernel(const int64_t* rowptr, const int64_t* col, const int64_t* eid, const T* w,
                            const T* r_row, const T* r_col, const T* x, const T* x_self, T* y,
                            int64_t num_rows, int64_t num_cols, int64_t num_edges, int64_t d) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= num_rows) return;  // whole warps exit together: the shuffles below stay full-warp
  const int64_t begin = rowptr[r], end = rowptr[r + 1];
  for (int64_t k0 = 0; k0 < d; k0 += kWarp * kColsPerLane) {
    T acc[M][kColsPerLane] = {};
    for (int64_t jb = begin; jb < end; jb += kWarp) {
      const int64_t j = jb + lane;
      long long c_lane = 0;
      T coef_lane[M] = {};
      if (j < end) {
        c_lane = col[j];
        const int64_t e = eid ? eid[j] : j;
#pragma unroll
        for (int m = 0; m < M; ++m) coef_lane[m] = w[m * num_edges + e] * (r_col ? r_col[m * num_cols + c_lane] : T(1));
      }
      const int count = static_cast<int>(min(static_cast<int64_t>(kWarp), end - jb));
      for (int t = 0; t < count; ++t) {
        const long long c = __shfl_sync(0xffffffffu, c_lane, t);
        T coef[M];
#pragma unroll
        for (int m = 0; m < M; ++m) coef[m] = __shfl_sync(0xffffffffu, coef_lane[m], t);
        const T* xc = x + c * d + k0 + lane;
#pragma unroll
        for (int q = 0; q < kColsPerLane; ++q) {
          if (k0 + lane + q * kWarp < d) {
            const T v = xc[q * kWarp];
#pragma unroll
            for (int m = 0; m < M; ++m) acc[m][q] += coef[m] * v;
          }
        }
      }
    }
#pragma unroll
    for (int q = 0; q < kColsPerLane; ++q) {
      const int64_t k = k0 + lane + q * kWarp;
      if (k >= d) continue;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const T rr = r_row ? r_row[m * num_rows + r] : T(1);
        T out = rr * acc[m][q];
        if (x_self) out += rr * rr * x_self[r * d + k];
        y[(m * num_rows + r) * d + k] = out;
      }
    }
  }
}

template <typename T>
__device__ __forceinline__ T warp_dot(const T* a, const T* b, int64_t d, int lane) {
  T s = 0;
  for (int64_t k = lane; k < d; k += kWarp) s += a[k] * b[k];
  return warp_sum(s);
}

// Pass 1 (warp per user): G_e = <gy_u, x_i> + <gy_i, x_u> and half_u = 1/2 r_u^2 s_u.
template <typename T>
__global__ void edge_grad_user_kernel(const int64_t* pu, const int64_t* ci, const T* w, const T* ru,
                                      const T* ri, const T* xu, const T* xi, const T* gu, const T* gi,
                                      bool self_loop, int64_t nu, int64_t d, T* g, T* half_u) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (u >= nu) return;
  T s = 0;
  for (int64_t e = pu[u]; e < pu[u + 1]; ++e) {
    const int64_t i = ci[e];
    const T ge = warp_dot(gu + u * d, xi + i * d, d, lane) + warp_dot(gi + i * d, xu + u * d, d, lane);
    if (lane == 0) g[e] = ge;
    if (ru) s += ge * ru[u] * w[e] * ri[i];
  }
  if (ru) {
    if (self_loop) s += 2 * ru[u] * ru[u] * warp_dot(gu + u * d, xu + u * d, d, lane);
    if (lane == 0) half_u[u] = T(0.5) * ru[u] * ru[u] * s;
  }
}

// Pass 2 (warp per item): half_i = 1/2 r_i^2 t_i, t_i = sum G_e A_e (+ self-loop term).
template <typename T>
__global__ void edge_grad_item_kernel(const int64_t* pi, const int64_t* cu, const int64_t* eid,
                                      const T* w, const T* ru, const T* ri, const T* xi, const T* gi,
                                      const T* g, bool self_loop, int64_t ni, int64_t d, T* half_i) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (i >= ni) return;
  T t = 0;
  for (int64_t j = pi[i] + lane; j < pi[i + 1]; j += kWarp) t += g[eid[j]] * ru[cu[j]] * w[eid[j]] * ri[i];
  t = warp_sum(t);
  if (self_loop) t += 2 * ri[i] * ri[i] * warp_dot(gi + i * d, xi + i * d, d, lane);
  if (lane == 0) half_i[i] = T(0.5) * ri[i] * ri[i] * t;
}

// Pass 3 (warp per user): dL/dw_e = r_u r_i G_e - half_u - half_i.
template <typename T>
__global__ void edge_grad_finish_kernel(const int64_t* pu, const int64_t* ci, const T* ru, const T* ri,
                                        const T* half_u, const T* half_i, int64_t nu, T* g) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (u >= nu) return;
  for (int64_t e = pu[u] + lane; e < pu[u + 1]; e += kWarp)
    g[e] = ru[u] * ri[ci[e]] * g[e] - half_u[u] - half_i[ci[e]];
}

}  // namespace

std::vector<torch::Tensor> edge_weights(const c10::optional<torch::Tensor>& phi,
                                        const c10::optional<torch::Tensor>& p,
                                        const c10::optional<torch::Tensor>& q,
                                        const c10::optional<torch::Tensor>& edge_weight,
                                        const std::vector<int64_t>& modes, int64_t seed, int64_t offset,
                                        int64_t num_edges, at::ScalarType dtype, const torch::Device& device,
                                        double tau, double gamma, double zeta, bool need_grad) {
  const c10::cuda::CUDAGuard guard(device);
  const auto options = torch::dtype(dtype).device(device);
  const auto shape = std::vector<int64_t>{static_cast<int64_t>(modes.size()), num_edges};
  auto w = torch::empty(shape, options);
  auto dw = need_grad ? torch::empty(shape, options) : torch::Tensor();
  TORCH_CHECK(modes.size() <= static_cast<size_t>(kMaxModes), "edge_weights: at most ", kMaxModes,
              " modes per call, got ", modes.size());
  ModeList mode_list{};
  mode_list.count = static_cast<int>(modes.size());
  bool need_u = false;
  for (int m = 0; m < mode_list.count; ++m) {
    const int mode = static_cast<int>(modes[m]);
    TORCH_CHECK(mode >= 0 && mode <= GATE_MODE0 + HARD_CONCRETE_MEAN, "edge_weights (cuda): unknown mode ", mode);
    mode_list.id[m] = mode;
    need_u |= mode >= GATE_MODE0 ? gate_needs_uniform(mode - GATE_MODE0) : mode_needs_uniform(mode);
  }
  if (num_edges == 0) return need_grad ? std::vector<torch::Tensor>{w, dw} : std::vector<torch::Tensor>{w};
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((num_edges + threads - 1) / threads);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dtype, "edge_weights_cuda", [&] {
    edge_weights_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        ptr_or_null<scalar_t>(phi), ptr_or_null<scalar_t>(p), ptr_or_null<scalar_t>(q),
        ptr_or_null<scalar_t>(edge_weight), mode_list, need_u, static_cast<uint64_t>(seed),
        static_cast<uint64_t>(offset), num_edges, static_cast<scalar_t>(tau), static_cast<scalar_t>(gamma),
        static_cast<scalar_t>(zeta), w.data_ptr<scalar_t>(), need_grad ? dw.data_ptr<scalar_t>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (need_grad) return {w, dw};
  return {w};
}

std::vector<torch::Tensor> degree_rsqrt(const torch::Tensor& rowptr_u, const torch::Tensor& rowptr_i,
                                        const torch::Tensor& perm, const torch::Tensor& w, bool self_loop) {
  const c10::cuda::CUDAGuard guard(w.device());
  const int64_t m_count = w.size(0), num_edges = w.size(1);
  const int64_t nu = rowptr_u.numel() - 1, ni = rowptr_i.numel() - 1;
  auto r_u = torch::empty({m_count, nu}, w.options());
  auto r_i = torch::empty({m_count, ni}, w.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "degree_rsqrt_cuda", [&] {
    const scalar_t one = self_loop ? scalar_t(1) : scalar_t(0);
    for (int64_t m = 0; m < m_count; ++m) {
      const scalar_t* wm = w.data_ptr<scalar_t>() + m * num_edges;
      if (nu > 0)
        degree_rsqrt_kernel<scalar_t><<<row_blocks(nu), kWarp * kWarpsPerBlock, 0, stream>>>(
            rowptr_u.data_ptr<int64_t>(), nullptr, wm, one, nu, r_u.data_ptr<scalar_t>() + m * nu);
      if (ni > 0)
        degree_rsqrt_kernel<scalar_t><<<row_blocks(ni), kWarp * kWarpsPerBlock, 0, stream>>>(
            rowptr_i.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), wm, one, ni, r_i.data_ptr<scalar_t>() + m * ni);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {r_u, r_i};
}

torch::Tensor spmm(const torch::Tensor& rowptr, const torch::Tensor& col, const c10::optional<torch::Tensor>& eid,
                   const torch::Tensor& w, const c10::optional<torch::Tensor>& r_row,
                   const c10::optional<torch::Tensor>& r_col, const torch::Tensor& x,
                   const c10::optional<torch::Tensor>& x_self) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t m_count = w.size(0), num_edges = w.size(1);
  const int64_t num_rows = rowptr.numel() - 1, num_cols = x.size(0), d = x.size(1);
  TORCH_CHECK(m_count == 1 || m_count == 2, "spmm: w must have 1 or 2 rows (modes), got ", m_count);
  auto y = torch::empty({m_count, num_rows, d}, x.options());
  if (num_rows == 0 || d == 0) return y;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_cuda", [&] {
    auto kernel = m_count == 1 ? spmm_kernel<scalar_t, 1> : spmm_kernel<scalar_t, 2>;
    kernel<<<row_blocks(num_rows), kWarp * kWarpsPerBlock, 0, stream>>>(
        rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), ptr_or_null<int64_t>(eid), w.data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(r_row), ptr_or_null<scalar_t>(r_col), x.data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(x_self), y.data_ptr<scalar_t>(), num_rows, num_cols, num_edges, d);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

torch::Tensor edge_grad(const torch::Tensor& rowptr_u, const torch::Tensor& col_item, const torch::Tensor& rowptr_i,
                        const torch::Tensor& col_user, const torch::Tensor& perm, const torch::Tensor& w,
                        const c10::optional<torch::Tensor>& r_u, const c10::optional<torch::Tensor>& r_i,
                        const torch::Tensor& x_u, const torch::Tensor& x_i, const torch::Tensor& gy_u,
                        const torch::Tensor& gy_i, bool self_loop) {
  const c10::cuda::CUDAGuard guard(w.device());
  const int64_t nu = rowptr_u.numel() - 1, ni = rowptr_i.numel() - 1, d = x_u.size(1);
  auto g = torch::empty_like(w);
  auto half_u = torch::empty({nu}, w.options());
  auto half_i = torch::empty({ni}, w.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int threads = kWarp * kWarpsPerBlock;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "edge_grad_cuda", [&] {
    const scalar_t *ru = ptr_or_null<scalar_t>(r_u), *ri = ptr_or_null<scalar_t>(r_i);
    if (nu > 0)
      edge_grad_user_kernel<scalar_t><<<row_blocks(nu), threads, 0, stream>>>(
          rowptr_u.data_ptr<int64_t>(), col_item.data_ptr<int64_t>(), w.data_ptr<scalar_t>(), ru, ri,
          x_u.data_ptr<scalar_t>(), x_i.data_ptr<scalar_t>(), gy_u.data_ptr<scalar_t>(), gy_i.data_ptr<scalar_t>(),
          self_loop, nu, d, g.data_ptr<scalar_t>(), half_u.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (ru == nullptr) return;  // no renormalisation: dL/dw = G
    if (ni > 0)
      edge_grad_item_kernel<scalar_t><<<row_blocks(ni), threads, 0, stream>>>(
          rowptr_i.data_ptr<int64_t>(), col_user.data_ptr<int64_t>(), perm.data_ptr<int64_t>(),
          w.data_ptr<scalar_t>(), ru, ri, x_i.data_ptr<scalar_t>(), gy_i.data_ptr<scalar_t>(),
          g.data_ptr<scalar_t>(), self_loop, ni, d, half_i.data_ptr<scalar_t>());
    if (nu > 0)
      edge_grad_finish_kernel<scalar_t><<<row_blocks(nu), threads, 0, stream>>>(
          rowptr_u.data_ptr<int64_t>(), col_item.data_ptr<int64_t>(), ru, ri, half_u.data_ptr<scalar_t>(),
          half_i.data_ptr<scalar_t>(), nu, g.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return g;
}

}  // namespace cuda
}  // namespace fgd
