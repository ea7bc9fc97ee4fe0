// binding_fence.h — stream fences of a Plan (fenceAsync): a CUDA event recorded on the plan's stream at
// call time and waited for on a libuv thread, so the wait covers the work enqueued before the call and
// none enqueued after it. The events come from a small per-plan pool and are reused (never one created
// per fence once the pool holds as many as fences overlap). They are created with
// cudaEventBlockingSync, so the waiting thread sleeps instead of spinning a core; MONARCH_FENCE_SPIN=1
// in the environment (read once) creates them without it (lower wake-up latency, one core busy per wait).
//
// Lifetime: a fence holds a FenceLease (the pool, shared, and its event). The lease goes back to the pool
// when the fence's worker is deleted (main thread), after its wait has returned. A pool closed by the plan
// (FreeResources) destroys its idle events at once and a leased one when it comes back; a plan torn down
// with a fence still waiting (environment teardown) drops its share of the pool, and the running fence
// keeps the pool and its event alive until it is deleted (or forever, if the environment never deletes it).
#pragma once

#ifdef MONARCH_WITH_CUDA

#include <memory>
#include <vector>

#include <monarch/monarch.h>
#include <monarch/monarch_cuda.h>

namespace monarch {
namespace binding {

class FencePool : public std::enable_shared_from_this<FencePool> {
 public:
  explicit FencePool(int device) : device_(device) {}
  ~FencePool();
  FencePool(const FencePool&) = delete;
  FencePool& operator=(const FencePool&) = delete;

  class Lease {
   public:
    Lease(std::shared_ptr<FencePool> pool, void* ev) : pool_(std::move(pool)), ev_(ev) {}
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    void* event() const { return ev_; }

   private:
    std::shared_ptr<FencePool> pool_;
    void* ev_;
  };

  // Takes an idle event (or creates one) and records it on s (main thread, device current).
  Status Record(cuda::Stream s, std::shared_ptr<Lease>* lease);
  // Destroys the idle events; leased ones are destroyed when they come back (main thread).
  void Close();
  size_t idle() const { return idle_.size(); }

 private:
  void Return(void* ev);  // a lease ends (main thread)
  int device_;
  bool closed_ = false;
  std::vector<void*> idle_;  // cudaEvent_t recorded before and waited for: free to record again
};

// Waits (blocking the calling thread) until every op recorded before the fence's event has completed;
// the failure of any of them (or a sticky error of the context) as a Status.
Status FenceWait(const FencePool::Lease& lease, int device);

}  // namespace binding
}  // namespace monarch

#endif  // MONARCH_WITH_CUDA
