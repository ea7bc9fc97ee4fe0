// final_step.cu — the last R-step and the final L-step of the T loop as one stage (docs/ALGORITHMS.md §A.2,
// §A.3): r_step(p, first, last = true) then l_step(p, final = true), with the same results.
//
// Where it applies, one kernel does both and aL, y, cL never reach global memory:
//   rl_final_cluster_kernel (rl_final_cluster_kernel.cuh): one tile (Aq = Fk = 1, MonarchAttention's
//   sequences), b1, b2 ≤ 64, head dim 64, 16-bit, a device and a build with sm_90+ code (thread-block
//   clusters and distributed shared memory). Off by default: on the H200 it is slower than the two stages
//   it replaces (seq-4k: 0.042 against 0.034 ms, benchmarks/notes/kernel-fused.md "Session 13"), so it runs
//   only with MONARCH_FUSED_KERNELS=1 (read once; the checker sets it to compare the kernel with the CPU).
// Everywhere else the two stages run as R then L, with the same kernels and results as the T loop's calls;
// with MONARCH_RL_OVERLAP=1, where both are persistent sm_90a kernels (rl_overlap_plan), side by side:
//   the (b, h) heads are cut into chunks; R(chunk c) runs on the caller's stream and L(chunk c) on a side
//   stream (side_stream.h) after an event, so L(c) runs while R(c + 1) does, each on its share of the SMs
//   (MonarchParams::maxCtas; the first R and the last L, which have no partner, take every SM). The two
//   kernels are bound by different things (the R-step by its products and writes, the L-step by its
//   reads), so the idea was that together they keep HBM busier than either alone. The caller's stream
//   waits for the last L before anything after the stage runs; nothing is synchronised on the host.
//   Measured on the H200 it is slower (Wan 480p T = 1 3.15 ms in turn, 3.82 side by side in 12 chunks,
//   3.47 in 4; 720p 8.46 → 9.36; the self-forcing chunk 0.534 → 0.598; benchmarks/notes/kernel-fused.md,
//   "Session 14"): each kernel is bound by its SMs, not by HBM, so splitting the SMs slows both. Hence the
//   switch, read once (the checker sets it to compare the chunks with the chain);
//   MONARCH_RL_CHUNKS=n and MONARCH_RL_L_CTAS=n (the L share) are A/B switches, read once.
//
// This file is the stage's one dispatch place.
#include <monarch/monarch_cuda.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

#include "../common/side_stream.h"
#include "../common/tma_map.h"
#include "../l_step/l_step_hopper.h"
#include "../r_step/r_step_hopper.h"
#include "rl_final_cluster_kernel.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;  // call_status, and the cluster kernel's helpers

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

// An integer A/B switch (read by the caller once): the variable's value, or 0 when unset or not positive.
int env_count(const char* name) {
  const char* e = std::getenv(name);
  const long v = e ? std::atol(e) : 0;
  return v > 0 && v < (1 << 20) ? int(v) : 0;
}

// How the two stages run side by side: chunks of `heads` heads (within one batch row), L kernels on lCtas
// SMs and R kernels on the rest.
struct RlOverlap {
  int heads = 0, chunks = 0;
  int lCtas = 0, rCtas = 0;
};

// Bytes of aL and y one R-step writes per chunk, at least (smaller chunks pay more in the starts and tails of
// their launches than the overlap gains).
constexpr int64_t kRlChunkBytes = int64_t(256) << 20;

// Whether (and how) final_step runs R and L side by side: MONARCH_RL_OVERLAP=1, both kernels persistent
// sm_90a ones, two heads or more; one chunk per kRlChunkBytes, at least two. The L share: the final
// L-step's part of the two kernels' time at Wan 480p on the H200 (1.40 of 3.15 ms), so 45% of the SMs
// (50 and 66 of 132 measured slower still).
bool rl_overlap_plan(const MonarchParams& p, bool first, RlOverlap* o) {
  static const bool on = tma::env_is("MONARCH_RL_OVERLAP", "1");  // off unless asked (file comment)
  static const int forcedChunks = env_count("MONARCH_RL_CHUNKS");
  static const int forcedL = env_count("MONARCH_RL_L_CTAS");
  if (!on || int64_t(p.B) * p.H < 2) return false;
  if (!r_step_persistent_hopper(p, first, true) || !l_step_persistent_hopper(p, true)) return false;
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  const int64_t heads = int64_t(p.B) * p.H;
  const int64_t bytes = 2 * ws_aR_elems(p) * int64_t(dtype_size(p.dtype));
  const int64_t chunks = std::min(heads, std::max<int64_t>(2, forcedChunks ? forcedChunks : bytes / kRlChunkBytes));
  // Chunks never cross a batch row: ⌈chunks / B⌉ per row, of ⌈H / that⌉ heads.
  const int perRow = int(std::min<int64_t>(p.H, (chunks + p.B - 1) / p.B));
  o->heads = (p.H + perRow - 1) / perRow;
  o->chunks = p.B * ((p.H + o->heads - 1) / o->heads);
  if (o->chunks < 2) return false;
  o->lCtas = forcedL ? std::min(forcedL, sms - 1) : std::max(1, (sms * 45 + 50) / 100);
  o->rCtas = std::max(1, sms - o->lCtas);
  return true;
}

// The problem restricted to heads [h0, h0 + n) of batch row b: inputs, output and workspace offset to them.
MonarchParams head_chunk(const MonarchParams& p, int b, int h0, int n) {
  MonarchParams c = p;
  c.B = 1;
  c.H = n;
  const size_t es = dtype_size(p.dtype);
  auto act = [&](Act a) {
    if (a.data) a.data = static_cast<char*>(a.data) + (int64_t(b) * a.sB + int64_t(h0) * a.sH) * int64_t(es);
    return a;
  };
  c.q = act(p.q);
  c.k = act(p.k);
  c.v = act(p.v);
  c.o = act(p.o);
  const int64_t perHead = int64_t(p.Aq) * p.Fk * p.b1 * p.b2;  // workspace scalars of one (b, h)
  const int64_t head = int64_t(b) * p.H + h0;
  auto ws = [&](void* base) { return base ? static_cast<void*>(static_cast<char*>(base) + head * perHead * p.D * int64_t(es)) : nullptr; };
  c.aR = ws(p.aR);
  c.aL = ws(p.aL);
  c.y = ws(p.y);
  c.cR = p.cR ? p.cR + head * perHead : nullptr;
  c.cL = p.cL ? p.cL + head * perHead : nullptr;
  const int64_t tileToks = int64_t(p.b1) * p.b2;
  c.keyValid = p.keyValid ? p.keyValid + int64_t(b) * p.Fk * tileToks : nullptr;
  c.queryValid = p.queryValid ? p.queryValid + int64_t(b) * p.Aq * tileToks : nullptr;
  return c;
}

Status cuda_status(cudaError_t e, const char* what) { return call_status(e, std::string("final_step: ") + what); }

// R then L per chunk, L on the side stream (see the file comment). The caller's stream always waits for the
// side stream's last enqueued work, also when a launch failed.
Status final_step_overlapped(const MonarchParams& p, bool first, const RlOverlap& o, cudaStream_t s,
                             SideLease& side) {
  cudaEvent_t* ev = side.events.data();  // [0]: fork; [1 + c]: R(c) done; [chunks + 1]: join
  Status st = cuda_status(cudaEventRecord(ev[0], s), "cudaEventRecord");
  if (st.ok) st = cuda_status(cudaStreamWaitEvent(side.stream, ev[0], 0), "cudaStreamWaitEvent");
  if (!st.ok) return st;
  int c = 0;
  for (int b = 0; b < p.B && st.ok; ++b) {
    for (int h0 = 0; h0 < p.H && st.ok; h0 += o.heads, ++c) {
      MonarchParams cp = head_chunk(p, b, h0, std::min(o.heads, p.H - h0));
      cp.maxCtas = c == 0 ? 0 : o.rCtas;  // the first R has no L beside it
      st = r_step(cp, first, true, s);
      if (st.ok) st = cuda_status(cudaEventRecord(ev[1 + c], s), "cudaEventRecord");
      if (st.ok) st = cuda_status(cudaStreamWaitEvent(side.stream, ev[1 + c], 0), "cudaStreamWaitEvent");
      cp.maxCtas = c == o.chunks - 1 ? 0 : o.lCtas;  // nor has the last L an R
      if (st.ok) st = l_step(cp, true, side.stream);
    }
  }
  Status join = cuda_status(cudaEventRecord(ev[o.chunks + 1], side.stream), "cudaEventRecord");
  if (join.ok) join = cuda_status(cudaStreamWaitEvent(s, ev[o.chunks + 1], 0), "cudaStreamWaitEvent");
  return st.ok ? join : st;
}

}  // namespace

bool final_step_fused(const MonarchParams& p, bool first) {
  if (!(fused_enabled() && rl_final_cluster_shape_ok(p) && p.B > 0 && p.H > 0)) return false;
  const FusedShape sh = fused_shape(p.b1, p.b2);
  return with_cluster_kernel(p, first, [&](auto tt, auto ff, auto nn) {
    return cluster_runs_here<typename decltype(tt)::type, decltype(ff)::value, decltype(nn)::value>(sh);
  });
}

int final_step_chunks(const MonarchParams& p, bool first) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0 || final_step_fused(p, first)) return 0;
  RlOverlap o;
  return rl_overlap_plan(p, first, &o) ? o.chunks : 0;
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
  RlOverlap o;
  if (rl_overlap_plan(p, first, &o)) {
    SideLease side;
    if (side_lease_acquire(o.chunks + 2, &side).ok) {
      Status st = final_step_overlapped(p, first, o, s, side);
      side_lease_release(std::move(side));
      return st;
    }
  }
  Status st = r_step(p, first, true, stream);
  if (!st.ok) return st;
  return l_step(p, true, stream);
}

}  // namespace cuda
}  // namespace monarch
