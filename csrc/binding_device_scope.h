// binding_device_scope.h — makes a GPU current on the calling thread for one scope (cudaSetDevice, the
// previous device restored at the end), so that every CUDA call of an instance, a DeviceBuffer, a
// CudaStream or a CudaEvent runs on its own device, on the main thread and on libuv threads alike, and
// code that shares the thread (another addon, a model runtime) finds its current device unchanged.
// Nothing switches when the device is already current. Without CUDA it does nothing.
#pragma once

#include <monarch/monarch.h>

#ifdef MONARCH_WITH_CUDA
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

class DeviceScope {
 public:
  // active = false (a CPU plan): does nothing, so CPU work never initialises the CUDA runtime.
  explicit DeviceScope(int device, bool active = true) {
#ifdef MONARCH_WITH_CUDA
    if (!active) return;
    int current = -1;
    status_ = cuda::get_device(&current);
    if (status_.ok && current != device) {
      status_ = cuda::set_device(device);
      if (status_.ok) previous_ = current;
    }
#else
    (void)device;
    (void)active;
#endif
  }
  ~DeviceScope() {
#ifdef MONARCH_WITH_CUDA
    if (previous_ >= 0) cuda::set_device(previous_);
#endif
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  // Whether the device could be made current (callers fail the call with it otherwise).
  const Status& status() const { return status_; }

 private:
  Status status_ = Status::Ok();
  int previous_ = -1;
};

}  // namespace binding
}  // namespace monarch
