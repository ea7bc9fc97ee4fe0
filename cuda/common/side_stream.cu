// side_stream.cu — the pool behind side_stream.h.
#include "side_stream.h"

#include "launch_utils.cuh"

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace monarch {
namespace cuda {
namespace {

std::mutex& pool_mutex() {
  static std::mutex mu;
  return mu;
}
// Free leases by device (never destroyed: see side_stream.h).
std::map<int, std::vector<SideLease>>& pool() {
  static auto* p = new std::map<int, std::vector<SideLease>>();
  return *p;
}

}  // namespace

using detail::call_status;

Status side_lease_acquire(int nEvents, SideLease* out) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return call_status(e, "cudaGetDevice");
  SideLease l;
  {
    std::lock_guard<std::mutex> lock(pool_mutex());
    auto& free = pool()[dev];
    if (!free.empty()) {
      l = std::move(free.back());
      free.pop_back();
    }
  }
  if (l.stream == nullptr) {
    l.device = dev;
    e = cudaStreamCreateWithFlags(&l.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) return call_status(e, "cudaStreamCreateWithFlags (side stream)");
  }
  while (int(l.events.size()) < nEvents) {
    cudaEvent_t ev = nullptr;
    e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      side_lease_release(std::move(l));  // what was made so far stays pooled
      return call_status(e, "cudaEventCreateWithFlags (side stream)");
    }
    l.events.push_back(ev);
  }
  *out = std::move(l);
  return Status::Ok();
}

void side_lease_release(SideLease&& lease) {
  if (lease.stream == nullptr) return;
  std::lock_guard<std::mutex> lock(pool_mutex());
  pool()[lease.device].push_back(std::move(lease));
  lease = SideLease{};
}

}  // namespace cuda
}  // namespace monarch
