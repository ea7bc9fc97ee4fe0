// binding_args.h — tier-2 validation: reading the argument objects of lib/native.ts (StageArgs,
// DenseArgs, GatherArgs, each NativeAct) into monarch::MonarchParams / DenseParams / GatherParams,
// one function per operation. Every check names the argument (e.g. "rStep: k: strided extent 1234
// elements exceeds its buffer of 1000 elements"); nothing a caller passes can crash the process.
//
// Data kinds: a CPU plan takes host typed arrays (Float32Array for float32, Uint16Array of bit
// patterns for float16/bfloat16); a CUDA plan takes DeviceBuffers. Masks and gather maps are always
// host arrays: on the CPU their pointers go straight into the params; on CUDA the plan uploads them
// (HostBlob) and patches the params with device pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "binding_common.h"
#include "binding_host_memory.h"

namespace monarch {
namespace binding {

// The fixed geometry of a plan (PlanOptions minus backend/threads).
struct PlanGeometry {
  DType dtype = kF32;
  int B = 1, H = 1, D = 1;
  int b1 = 1, b2 = 1;
  int maxAq = 1, maxFk = 1;
  bool iterative = false;
};

class DeviceBuffer;

// Where the parsed arguments live.
struct ArgContext {
  const char* op = "";  // method name for messages: "rStep", "lStep", "finalStep", "dense", "gather" (or …Async)
  bool cuda = false;    // DeviceBuffers (true) or host typed arrays (false)
  int device = 0;       // CUDA: the plan's GPU; every DeviceBuffer must be on it
  // Non-null for CPU async calls: every JS object whose memory the params point into is referenced
  // here, so it stays alive until the worker completes.
  std::vector<Napi::ObjectReference>* keep = nullptr;
  // Async CPU calls (secure = true): every host span is made safe against detachment, transfer and
  // shrinking at read time (binding_host_memory.h); the params point at what `holds` returns. Gather
  // maps are snapshotted in every call.
  bool secure = false;
  HostHolds holds;

  // Every memory span taken while reading, re-checked by VerifyUnchanged once reading is over:
  // reading a property can run a user getter, which could dispose a DeviceBuffer or detach an
  // ArrayBuffer that was already read.
  struct HostSpan {
    Napi::TypedArray array;
    const void* data;
    size_t bytes;
  };
  struct DeviceSpan {
    Napi::Object object;  // keeps it reachable for the duration of the call
    DeviceBuffer* buffer;
  };
  std::vector<HostSpan> hostSpans;
  std::vector<DeviceSpan> deviceSpans;
};

// Throws an Error when a span recorded in ctx no longer holds (see ArgContext).
void VerifyUnchanged(Napi::Env env, const ArgContext& ctx);

// A host array a CUDA plan must upload before the call (masks, gather maps).
struct HostBlob {
  const void* data = nullptr;
  size_t bytes = 0;
};

struct StageCall {
  MonarchParams p;        // workspace pointers (aR..y) are the plan's to set
  HostBlob keyValid, queryValid;
};
struct DenseCall {
  DenseParams p;
  HostBlob keyValid;
};
struct GatherCall {
  GatherParams p;
  HostBlob map;
};

// `needOutput`: the final L-step writes o (required then; ignored otherwise).
StageCall ReadStageArgs(Napi::Env env, const Napi::Value& args, const PlanGeometry& g, bool needOutput,
                        ArgContext& ctx);
DenseCall ReadDenseArgs(Napi::Env env, const Napi::Value& args, ArgContext& ctx);
GatherCall ReadGatherArgs(Napi::Env env, const Napi::Value& args, ArgContext& ctx);

}  // namespace binding
}  // namespace monarch
