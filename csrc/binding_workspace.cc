// binding_workspace.cc — see binding_workspace.h.
#include "binding_workspace.h"

#include <new>

namespace monarch {
namespace binding {

namespace {
constexpr std::align_val_t kHostAlign{64};  // cache line; also enough for any SIMD load of the CPU backend
const char* const kNames[5] = {"aR", "cR", "aL", "cL", "y"};
}  // namespace

void Workspace::AlignedFree::operator()(uint8_t* p) const { ::operator delete[](p, kHostAlign); }

bool Workspace::ComputeSizes(const PlanGeometry& g, Sizes* out) {
  int64_t c = 1;
  for (int64_t x : {int64_t(g.B), int64_t(g.H), int64_t(g.maxAq), int64_t(g.maxFk), int64_t(g.b1),
                    int64_t(g.b2)}) {
    if (!MulOk(c, x, &c)) return false;
  }
  int64_t a = 0, aBytes = 0, cBytes = 0;
  if (!MulOk(c, g.D, &a) || !MulOk(a, int64_t(dtype_size(g.dtype)), &aBytes) || !MulOk(c, 4, &cBytes)) {
    return false;
  }
  int64_t total = 0;  // the sum must fit too (Sizes::Total)
  for (int64_t x : {aBytes, aBytes, aBytes, cBytes, cBytes}) {
    if (!AddOk(total, x, &total)) return false;
  }
  out->aR = g.iterative ? size_t(aBytes) : 0;
  out->cR = g.iterative ? size_t(cBytes) : 0;
  out->aL = size_t(aBytes);
  out->cL = size_t(cBytes);
  out->y = size_t(aBytes);
  return true;
}

Status Workspace::Allocate(const PlanGeometry& g, bool cuda) {
  Release();
  Sizes s;
  if (!ComputeSizes(g, &s)) return Status::Error("workspace size overflows 64 bits");
  const size_t bytes[5] = {s.aR, s.cR, s.aL, s.cL, s.y};
  for (int i = 0; i < 5; ++i) {
    if (bytes[i] == 0) continue;
    if (cuda) {
#ifdef MONARCH_WITH_CUDA
      Status st = dev_[i].Allocate(bytes[i]);
      if (!st.ok) {
        Release();
        return Status::Error(std::string("allocating workspace ") + kNames[i] + " (" + std::to_string(bytes[i]) +
                             " bytes): " + st.message);
      }
      ptr_[i] = dev_[i].get();
#else
      return Status::Error("this build has no CUDA kernels");
#endif
    } else {
      uint8_t* p = static_cast<uint8_t*>(::operator new[](bytes[i], kHostAlign, std::nothrow));
      if (!p) {
        Release();
        return Status::Error(std::string("out of host memory allocating workspace ") + kNames[i] + " (" +
                             std::to_string(bytes[i]) + " bytes)");
      }
      host_[i].reset(p);
      ptr_[i] = p;
    }
  }
  return Status::Ok();
}

void Workspace::Release() {
  for (int i = 0; i < 5; ++i) {
    host_[i].reset();
#ifdef MONARCH_WITH_CUDA
    dev_[i].Reset();
#endif
    ptr_[i] = nullptr;
  }
}

void Workspace::Abandon() {
  for (int i = 0; i < 5; ++i) {
    (void)host_[i].release();
#ifdef MONARCH_WITH_CUDA
    dev_[i].Abandon();
#endif
    ptr_[i] = nullptr;
  }
}

}  // namespace binding
}  // namespace monarch
