// final_step.cu — the last R-step and the final L-step of the T loop as one stage (docs/ALGORITHMS.md §A.2,
// §A.3): r_step(p, first, last = true) then l_step(p, final = true), with the same results.
//
// Where it applies, one kernel does both and aL, y, cL never reach global memory:
//   rl_final_cluster_kernel (rl_final_cluster_kernel.cuh): one tile (Aq = Fk = 1, MonarchAttention's
//   sequences), b1, b2 ≤ 64, head dim 64, 16-bit, a device and a build with sm_90+ code (thread-block
//   clusters and distributed shared memory). Off by default: on the H200 it is slower than the two stages
//   it replaces (seq-4k: 0.042 against 0.034 ms, benchmarks/notes/kernel-fused.md "Session 13"), so it runs
//   only with MONARCH_FUSED_KERNELS=1 (read once; the checker sets it to compare the kernel with the CPU).
// Everywhere else the two stages run in order on the stream, exactly as the T loop would call them.
//
// This file is the stage's one dispatch place.
#include <monarch/monarch_cuda.h>

#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

#include "../common/tma_map.h"
#include "rl_final_cluster_kernel.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

bool fused_enabled() {
  static const bool on = tma::env_is("MONARCH_FUSED_KERNELS", "1");
  return on;
}

// The shape rule of the cluster kernel (the device and build checks come after it).
bool rl_final_cluster_shape_ok(const MonarchParams& p) {
  return (p.dtype == kF16 || p.dtype == kBF16) && p.D == 64 && p.Aq == 1 && p.Fk == 1 && p.b1 <= 64 &&
         p.b2 <= 64 && act_rows_aligned16(p.q) && act_rows_aligned16(p.k) && act_rows_aligned16(p.v) &&
         act_rows_aligned16(p.o) && aligned16(p.aR);
}

// Whether the cluster kernel for (T, kFirst, NB) runs on the current device: a property of (kernel,
// device), asked once per device.
template <typename T, bool kFirst, int NB>
bool cluster_runs_here(const FusedShape& sh) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, bool> runs;  // (device, C) → runs
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  std::lock_guard<std::mutex> lock(mu);
  auto it = runs.find({dev, sh.C});
  if (it == runs.end()) it = runs.emplace(std::make_pair(dev, sh.C), rl_final_cluster_runs<T, 64, kFirst, NB>(sh)).first;
  return it->second;
}

// Calls fn(TypeTag<T>, bool_constant<kFirst>, DimTag<NB>) for the cluster kernel of the problem.
template <typename Fn>
auto with_cluster_kernel(const MonarchParams& p, bool first, Fn&& fn) {
  const int nb = ((p.b1 > p.b2 ? p.b1 : p.b2) + 15) / 16;
  auto by_nb = [&](auto tt, auto ff) {
    switch (nb) {
      case 1: return fn(tt, ff, DimTag<1>{});
      case 2: return fn(tt, ff, DimTag<2>{});
      case 3: return fn(tt, ff, DimTag<3>{});
      default: return fn(tt, ff, DimTag<4>{});
    }
  };
  auto by_first = [&](auto tt) {
    return first ? by_nb(tt, std::true_type{}) : by_nb(tt, std::false_type{});
  };
  return p.dtype == kF16 ? by_first(TypeTag<__half>{}) : by_first(TypeTag<__nv_bfloat16>{});
}

}  // namespace

bool final_step_fused(const MonarchParams& p, bool first) {
  if (!(fused_enabled() && rl_final_cluster_shape_ok(p) && p.B > 0 && p.H > 0)) return false;
  const FusedShape sh = fused_shape(p.b1, p.b2);
  return with_cluster_kernel(p, first, [&](auto tt, auto ff, auto nn) {
    return cluster_runs_here<typename decltype(tt)::type, decltype(ff)::value, decltype(nn)::value>(sh);
  });
}

Status final_step(const MonarchParams& p, bool first, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0) return Status::Ok();
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (final_step_fused(p, first)) {
    const FusedShape sh = fused_shape(p.b1, p.b2);
    return with_cluster_kernel(p, first, [&](auto tt, auto ff, auto nn) {
      return launch_rl_final_cluster<typename decltype(tt)::type, 64, decltype(ff)::value, decltype(nn)::value>(p, sh, s);
    });
  }
  Status st = r_step(p, first, true, stream);
  if (!st.ok) return st;
  return l_step(p, true, stream);
}

}  // namespace cuda
}  // namespace monarch
