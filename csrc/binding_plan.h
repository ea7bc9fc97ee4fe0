// binding_plan.h — Plan (lib/native.ts NativePlan): owns the workspace of one MonarchAttention geometry
// and, on CUDA, its stream (created here, or a caller's stream passed as options.stream: used, never
// destroyed), the device copies of host masks / gather maps, and timing events.
//
// Execution model:
//   CPU plan  — sync methods run on the calling thread; async methods run on the libuv pool through a
//               SerialQueue (in call order, one at a time) and return Promises. A sync method while
//               async work is in flight throws (it would race the workspace).
//   CUDA plan — sync and async methods both enqueue on the plan's stream and return (async: an
//               already-settled Promise); synchronize() waits on the calling thread,
//               synchronizeAsync() in an AsyncWorker; fenceAsync() records an event on the stream now and
//               waits for that event in an AsyncWorker (binding_fence.h), so it covers the work enqueued
//               before it and not the work enqueued while it waits. upload() / download() enqueue host<->device
//               copies on the same stream (binding_plan_transfer.cc); the host blocks they touch are
//               referenced until a later synchronize has passed them.
// Async methods report argument errors as rejected Promises; sync methods throw.
// dispose() frees everything (deferred until a running worker completes); later calls throw
// "Plan was disposed". The finalizer frees whatever dispose did not. The workspace's size is reported
// to V8 as external memory while it is held. Options: see lib/native.ts PlanOptions (threads and
// maxWorkspaceBytes apply to this plan only).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "binding_args.h"
#include "binding_common.h"
#include "binding_device_scope.h"
#include "binding_workers.h"
#include "binding_workspace.h"

#ifdef MONARCH_WITH_CUDA
#include <memory>

#include "binding_cuda.h"
#include "binding_fence.h"
#endif

namespace monarch {
namespace binding {

class Plan : public Napi::ObjectWrap<Plan> {
 public:
  static Napi::Function Init(Napi::Env env);
  static constexpr int kOpCount = 5;  // the members of Op
  explicit Plan(const Napi::CallbackInfo& info);
  ~Plan() override;

 private:
  enum class Op { kRStep, kLStep, kDense, kGather, kFinalStep };  // OpName (binding_plan.cc) names them in this order

  Napi::Value RStep(const Napi::CallbackInfo& info) { return Run(info, Op::kRStep, false); }
  Napi::Value RStepAsync(const Napi::CallbackInfo& info) { return Run(info, Op::kRStep, true); }
  Napi::Value LStep(const Napi::CallbackInfo& info) { return Run(info, Op::kLStep, false); }
  Napi::Value LStepAsync(const Napi::CallbackInfo& info) { return Run(info, Op::kLStep, true); }
  // finalStep(args, first): rStep(args, first, last = true) then lStep(args, final = true) as one stage
  // (on CUDA one fused kernel where cuda::final_step_fused says so).
  Napi::Value FinalStep(const Napi::CallbackInfo& info) { return Run(info, Op::kFinalStep, false); }
  Napi::Value FinalStepAsync(const Napi::CallbackInfo& info) { return Run(info, Op::kFinalStep, true); }
  Napi::Value Dense(const Napi::CallbackInfo& info) { return Run(info, Op::kDense, false); }
  Napi::Value DenseAsync(const Napi::CallbackInfo& info) { return Run(info, Op::kDense, true); }
  Napi::Value Gather(const Napi::CallbackInfo& info) { return Run(info, Op::kGather, false); }
  Napi::Value GatherAsync(const Napi::CallbackInfo& info) { return Run(info, Op::kGather, true); }
  void Synchronize(const Napi::CallbackInfo& info);
  Napi::Value SynchronizeAsync(const Napi::CallbackInfo& info);
  Napi::Value FenceAsync(const Napi::CallbackInfo& info);
  // Queues an AsyncWorker running `job` after the plan's earlier async calls (synchronizeAsync / fenceAsync).
  Napi::Value QueueWait(Napi::Env env, const char* name, std::function<Status()> job);
  Napi::Value RecordEvent(const Napi::CallbackInfo& info);
  Napi::Value EventElapsedMs(const Napi::CallbackInfo& info);
  void ReleaseEvents(const Napi::CallbackInfo& info);
  Napi::Value GetStream(const Napi::CallbackInfo& info);  // the stream as a bigint (CUDA), null (CPU)
  void WaitEvent(const Napi::CallbackInfo& info);          // waitEvent(event: bigint): cudaStreamWaitEvent
  void RecordEventHandle(const Napi::CallbackInfo& info);  // recordEventHandle(event: bigint): cudaEventRecord
  void EventOp(const Napi::CallbackInfo& info, bool wait);
  void Upload(const Napi::CallbackInfo& info);    // upload(dst: DeviceBuffer, src: addon typed array)
  void Download(const Napi::CallbackInfo& info);  // download(dst: addon typed array, src: DeviceBuffer)
  void Transfer(const Napi::CallbackInfo& info, bool toDevice);
  void Dispose(const Napi::CallbackInfo& info);

  // Validates the arguments of `op`, builds its job and runs it (see the execution model above).
  Napi::Value Run(const Napi::CallbackInfo& info, Op op, bool async);
  // The job of one call: params filled in one place per operation (workspace pointers and, on CUDA,
  // device copies of masks / maps included). Runs the backend when called.
  std::function<Status()> BuildJob(const Napi::CallbackInfo& info, Op op, ArgContext& ctx);
  std::function<Status()> StageJob(const Napi::CallbackInfo& info, Op op, ArgContext& ctx);
  std::function<Status()> DenseJob(const Napi::CallbackInfo& info, ArgContext& ctx);
  std::function<Status()> GatherJob(const Napi::CallbackInfo& info, ArgContext& ctx);

  // After reading arguments (which can run user getters): the plan is still live (and idle for a
  // sync CPU call) and every span read is still valid.
  void AfterRead(Napi::Env env, const ArgContext& ctx) const;
  void CheckLive(Napi::Env env, const char* method) const;
  void CheckIdle(Napi::Env env, const char* method) const;  // CPU: no async work in flight
  void FreeResources();

  bool cuda_ = false;
  bool disposed_ = false;
  std::pair<int, int> arShape_{0, 0};  // (Aq, Fk) of the last accepted lStep(final = false): aR / cR written
  int device_ = 0;             // CUDA: the GPU of every call (DeviceScope on each thread that calls CUDA)
  int threads_ = 0;            // CPU threads of this plan's calls (0 = process-wide setting)
  int64_t externalBytes_ = 0;  // reported to V8 with napi_adjust_external_memory, reversed on free
  PlanGeometry geom_;
  Workspace ws_;
  SerialQueue queue_;
#ifdef MONARCH_WITH_CUDA
  StreamHandle stream_;
  UploadSlot keyValidSlot_, queryValidSlot_, denseKeyValidSlot_, mapSlot_;
  EventPool events_;
  // Events of fenceAsync, reused (shared with the fences in flight: binding_fence.h).
  std::shared_ptr<FencePool> fences_;
  // Host blocks of copies enqueued since the last synchronize (kept alive until the stream passes them).
  std::vector<HostBlockRef> inflightHost_;
#endif
};

}  // namespace binding
}  // namespace monarch
