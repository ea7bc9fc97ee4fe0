// binding_workspace.h — the stage buffers of one plan (monarch.h "Stage buffers"): aR, cR (only for
// iterative plans, T >= 2), aL, cL, y, sized for maxAq × maxFk tiles; host memory (64-byte aligned) for
// CPU plans, device memory for CUDA plans. All-or-nothing: Allocate either holds every buffer or none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "binding_args.h"

#ifdef MONARCH_WITH_CUDA
#include "binding_cuda.h"
#endif

namespace monarch {
namespace binding {

class Workspace {
 public:
  // Sizes in bytes of each buffer for geometry g (B·H·maxAq·maxFk·b1·b2·(D·st | f32)); false when they
  // overflow.
  struct Sizes {
    size_t aR = 0, cR = 0, aL = 0, cL = 0, y = 0;
    size_t Total() const { return aR + cR + aL + cL + y; }  // ComputeSizes checks it fits in int64
  };
  static bool ComputeSizes(const PlanGeometry& g, Sizes* out);

  // On failure returns an error message (containing "out of GPU memory" / "out of host memory") and
  // holds nothing.
  Status Allocate(const PlanGeometry& g, bool cuda);
  void Release();
  // Gives up ownership without freeing (environment teardown while a worker may still be using it).
  void Abandon();

  void* aR() const { return ptr_[0]; }
  float* cR() const { return static_cast<float*>(ptr_[1]); }
  void* aL() const { return ptr_[2]; }
  float* cL() const { return static_cast<float*>(ptr_[3]); }
  void* y() const { return ptr_[4]; }

 private:
  struct AlignedFree {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, AlignedFree> host_[5];
#ifdef MONARCH_WITH_CUDA
  DeviceMem dev_[5];
#endif
  void* ptr_[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
};

}  // namespace binding
}  // namespace monarch
