// binding_plan.cc — Plan (see binding_plan.h for the execution model).
#include "binding_plan.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#ifdef MONARCH_WITH_CUDA
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

namespace {

const char* OpName(int op, bool async) {
  // Indexed by Plan::Op (binding_plan.h).
  static const char* kSync[] = {"rStep", "lStep", "dense", "gather", "finalStep"};
  static const char* kAsync[] = {"rStepAsync", "lStepAsync", "denseAsync", "gatherAsync", "finalStepAsync"};
  static_assert(sizeof(kSync) / sizeof(kSync[0]) == Plan::kOpCount && sizeof(kAsync) / sizeof(kAsync[0]) == Plan::kOpCount,
                "one method name per Plan::Op");
  return async ? kAsync[op] : kSync[op];
}

// Prefixes a backend failure with the method that ran it.
std::function<Status()> Named(const char* name, std::function<Status()> job) {
  return [name, job = std::move(job)]() {
    Status s = job();
    if (!s.ok) s.message = std::string(name) + ": " + (s.message.empty() ? "backend call failed" : s.message);
    return s;
  };
}

}  // namespace

Napi::Function Plan::Init(Napi::Env env) {
  return DefineClass(env, "Plan",
                     {
                         InstanceMethod<&Plan::RStep>("rStep"),
                         InstanceMethod<&Plan::RStepAsync>("rStepAsync"),
                         InstanceMethod<&Plan::LStep>("lStep"),
                         InstanceMethod<&Plan::LStepAsync>("lStepAsync"),
                         InstanceMethod<&Plan::FinalStep>("finalStep"),
                         InstanceMethod<&Plan::FinalStepAsync>("finalStepAsync"),
                         InstanceMethod<&Plan::Dense>("dense"),
                         InstanceMethod<&Plan::DenseAsync>("denseAsync"),
                         InstanceMethod<&Plan::Gather>("gather"),
                         InstanceMethod<&Plan::GatherAsync>("gatherAsync"),
                         InstanceMethod<&Plan::Synchronize>("synchronize"),
                         InstanceMethod<&Plan::SynchronizeAsync>("synchronizeAsync"),
                         InstanceMethod<&Plan::FenceAsync>("fenceAsync"),
                         InstanceMethod<&Plan::RecordEvent>("recordEvent"),
                         InstanceMethod<&Plan::EventElapsedMs>("eventElapsedMs"),
                         InstanceMethod<&Plan::ReleaseEvents>("releaseEvents"),
                         InstanceMethod<&Plan::WaitEvent>("waitEvent"),
                         InstanceMethod<&Plan::RecordEventHandle>("recordEventHandle"),
                         InstanceAccessor<&Plan::GetStream>("stream"),
                         InstanceMethod<&Plan::Upload>("upload"),
                         InstanceMethod<&Plan::Download>("download"),
                         InstanceMethod<&Plan::Dispose>("dispose"),
                     });
}

Plan::Plan(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Plan>(info) {
  Napi::Env env = info.Env();
  const std::string w = "Plan options";
  Napi::Object o = ToObject(env, info[0], w);

  Napi::Value bv = o.Get("backend");
  if (!bv.IsString()) ThrowTypeError(env, w + ".backend must be 'cpu' or 'cuda', got " + DescribeValue(bv));
  std::string backend = bv.As<Napi::String>().Utf8Value();
  if (backend != "cpu" && backend != "cuda") {
    ThrowRangeError(env, w + ".backend must be 'cpu' or 'cuda', got '" + backend + "'");
  }
  cuda_ = backend == "cuda";

  geom_.dtype = DType(ReadInt(env, o, "dtype", w + ".dtype", 0, 2));
  geom_.B = int(ReadInt(env, o, "B", w + ".B", 1, kMaxInt32));
  geom_.H = int(ReadInt(env, o, "H", w + ".H", 1, kMaxInt32));
  geom_.D = int(ReadInt(env, o, "D", w + ".D", 1, kMaxInt32));
  geom_.b1 = int(ReadInt(env, o, "b1", w + ".b1", 1, kMaxInt32));
  geom_.b2 = int(ReadInt(env, o, "b2", w + ".b2", 1, kMaxInt32));
  geom_.maxAq = int(ReadInt(env, o, "maxAq", w + ".maxAq", 1, kMaxInt32));
  geom_.maxFk = int(ReadInt(env, o, "maxFk", w + ".maxFk", 1, kMaxInt32));
  geom_.iterative = ToBool(env, o.Get("iterative"), w + ".iterative");
  int threads = int(ReadInt(env, o, "threads", w + ".threads", 0, 65536));

  // Token indices inside one sequence are ints in every backend.
  int64_t tokens = int64_t(geom_.b1) * geom_.b2 * std::max(geom_.maxAq, geom_.maxFk);
  if (tokens > kMaxInt32) {
    ThrowRangeError(env, w + ": b1·b2·max(maxAq, maxFk) = " + std::to_string(tokens) +
                             " tokens per sequence exceeds 2^31-1");
  }
  Workspace::Sizes sizes;
  if (!Workspace::ComputeSizes(geom_, &sizes)) {
    ThrowRangeError(env, w + ": workspace size B·H·maxAq·maxFk·b1·b2·D overflows 64 bits");
  }
  // The budget is checked before anything is allocated (absent = no limit).
  Napi::Value budgetValue = o.Get("maxWorkspaceBytes");
  if (!budgetValue.IsUndefined()) {
    const int64_t budget = ToInt(env, budgetValue, w + ".maxWorkspaceBytes", 1, kMaxSafeInteger);
    const size_t total = sizes.Total();
    if (total > uint64_t(budget)) {
      ThrowRangeError(env, w + ": workspace of " + std::to_string(total) + " bytes (aR, cR, aL, cL, y for B·H·maxAq·maxFk·b1·b2 = " +
                               std::to_string(geom_.B) + "·" + std::to_string(geom_.H) + "·" + std::to_string(geom_.maxAq) + "·" +
                               std::to_string(geom_.maxFk) + "·" + std::to_string(geom_.b1) + "·" + std::to_string(geom_.b2) +
                               " rows, D = " + std::to_string(geom_.D) + ") exceeds maxWorkspaceBytes " + std::to_string(budget));
    }
  }

  // The GPU (options.device, default 0): made current around every CUDA call of this plan.
  Napi::Value deviceValue = o.Get("device");
  if (!deviceValue.IsUndefined()) {
    device_ = int(ToInt(env, deviceValue, w + ".device", 0, kMaxInt32));
    if (!cuda_ && device_ != 0) ThrowRangeError(env, w + ".device " + std::to_string(device_) + " needs the CUDA backend (a CPU plan runs on device 0)");
  }
  // An external stream (a caller's cudaStream_t as a bigint): the plan enqueues on it and never destroys it.
  Napi::Value streamValue = o.Get("stream");
  void* external = nullptr;
  if (!streamValue.IsUndefined()) {
    external = ToHandle(env, streamValue, w + ".stream");
    if (!cuda_) ThrowTypeError(env, w + ".stream needs the CUDA backend (a CPU plan has no stream)");
  }
  if (cuda_) {
    const std::string& reason = CudaUnavailableReason();
    if (!reason.empty()) ThrowError(env, "CUDA backend unavailable: " + reason);
#ifdef MONARCH_WITH_CUDA
    const int count = VisibleDeviceCount();
    if (device_ >= count) {
      ThrowRangeError(env, w + ".device " + std::to_string(device_) + " is out of range: " + std::to_string(count) +
                               " CUDA device(s) visible (0.." + std::to_string(count - 1) + ")");
    }
#endif
  }
  DeviceScope dev(device_, cuda_);  // the workspace and the stream belong to this device
  ThrowIfFailed(env, dev.status());
  // From here on every resource is held by an RAII member: a throw frees what was allocated.
  Status s = ws_.Allocate(geom_, cuda_);
  if (!s.ok) ThrowError(env, "Plan: " + s.message);
#ifdef MONARCH_WITH_CUDA
  if (cuda_ && external) {
    stream_.Borrow(external);
  } else if (cuda_) {
    s = stream_.Create();
    if (!s.ok) ThrowError(env, "Plan: " + s.message);
  }
  if (cuda_) fences_ = std::make_shared<FencePool>(device_);
#else
  (void)external;
#endif
  threads_ = threads;  // this plan's CPU calls only (cpu::ThreadsScope); 0 = the process-wide setting
  // Tell V8 about the native memory this object holds, so that dropping it without dispose() puts
  // pressure on the garbage collector (the finalizer frees it and reverses this).
  externalBytes_ = int64_t(sizes.Total());
  int64_t ignored = 0;
  napi_adjust_external_memory(env, externalBytes_, &ignored);
  queue_.onIdle = [this]() {
    if (disposed_) FreeResources();
  };
}

Plan::~Plan() {
  if (queue_.busy()) {
    // Environment teardown with a worker still running: it may be reading the workspace, so leak it
    // rather than free memory under it.
    ws_.Abandon();
#ifdef MONARCH_WITH_CUDA
    stream_.Abandon();
    new std::vector<HostBlockRef>(std::move(inflightHost_));  // copies may be in flight: leak, never free
    fences_.reset();  // a fence still waiting keeps the pool and its event (binding_fence.h)
#endif
    return;
  }
  FreeResources();
}

void Plan::FreeResources() {
  DeviceScope dev(device_, cuda_);  // a failure to switch leaves nothing better to do than try the frees
#ifdef MONARCH_WITH_CUDA
  if (cuda_ && stream_.get()) cuda::stream_sync(stream_.get());
  inflightHost_.clear();
  events_.Release();
  if (fences_) fences_->Close();
  keyValidSlot_.Reset();
  queryValidSlot_.Reset();
  denseKeyValidSlot_.Reset();
  mapSlot_.Reset();
#endif
  ws_.Release();
#ifdef MONARCH_WITH_CUDA
  stream_.Reset();
#endif
  if (externalBytes_ != 0) {
    int64_t ignored = 0;
    napi_adjust_external_memory(Env(), -externalBytes_, &ignored);
    externalBytes_ = 0;
  }
}

void Plan::CheckLive(Napi::Env env, const char* method) const {
  if (disposed_) ThrowError(env, std::string("Plan was disposed (") + method + ")");
}

void Plan::CheckIdle(Napi::Env env, const char* method) const {
  if (!cuda_ && queue_.busy()) {
    ThrowError(env, std::string(method) +
                        ": this CPU plan has async calls in flight; await them before calling a sync method");
  }
}

void Plan::AfterRead(Napi::Env env, const ArgContext& ctx) const {
  CheckLive(env, ctx.op);
  if (!ctx.keep) CheckIdle(env, ctx.op);  // sync call (async CPU calls queue instead)
  VerifyUnchanged(env, ctx);
}

std::function<Status()> Plan::BuildJob(const Napi::CallbackInfo& info, Op op, ArgContext& ctx) {
  switch (op) {
    case Op::kRStep:
    case Op::kLStep:
    case Op::kFinalStep: return Named(ctx.op, StageJob(info, op, ctx));
    case Op::kDense: return Named(ctx.op, DenseJob(info, ctx));
    case Op::kGather: return Named(ctx.op, GatherJob(info, ctx));
  }
  ThrowError(info.Env(), "unknown operation");
}

// rStep(args, first, last) / lStep(args, final) / finalStep(args, first): MonarchParams for one stage,
// filled here only.
std::function<Status()> Plan::StageJob(const Napi::CallbackInfo& info, Op op, ArgContext& ctx) {
  Napi::Env env = info.Env();
  const std::string name = ctx.op;
  bool first = false, last = false, final = false;
  if (op != Op::kLStep) {  // rStep(args, first, last), finalStep(args, first): last = final = true
    first = ToBool(env, info[1], name + ": first");
    last = op == Op::kFinalStep || ToBool(env, info[2], name + ": last");
    final = op == Op::kFinalStep;
    if (!first && !geom_.iterative) {
      ThrowError(env, name + ": first=false reads aR/cR, which this plan did not allocate (iterative: false)");
    }
  } else {
    final = ToBool(env, info[1], name + ": final");
    if (!final && !geom_.iterative) {
      ThrowError(env, name + ": final=false writes aR/cR, which this plan did not allocate (iterative: false)");
    }
  }
  StageCall c = ReadStageArgs(env, info[0], geom_, final, ctx);  // final: the output o is read
  AfterRead(env, ctx);
  MonarchParams p = c.p;
  // A later R-step reads the aR / cR that the last non-final L-step wrote, for the same (Aq, Fk): anything
  // else would read workspace nobody wrote (garbage, not an error) — the T loop never does it.
  if (op != Op::kLStep && !first && !(arShape_.first == p.Aq && arShape_.second == p.Fk)) {
    ThrowError(env, name + ": first=false reads aR/cR, which no lStep(final=false) of this plan has written for Aq=" +
                        std::to_string(p.Aq) + ", Fk=" + std::to_string(p.Fk) + " (call lStep(args, false) first)");
  }
  if (op == Op::kLStep && !final) arShape_ = {p.Aq, p.Fk};
  p.aR = ws_.aR();
  p.cR = ws_.cR();
  p.aL = ws_.aL();
  p.cL = ws_.cL();
  p.y = ws_.y();
#ifdef MONARCH_WITH_CUDA
  if (cuda_) {
    cuda::Stream s = stream_.get();
    const void* dev = nullptr;
    ThrowIfFailed(env, keyValidSlot_.Upload(c.keyValid.data, c.keyValid.bytes, s, &dev));
    p.keyValid = static_cast<const uint8_t*>(dev);
    ThrowIfFailed(env, queryValidSlot_.Upload(c.queryValid.data, c.queryValid.bytes, s, &dev));
    p.queryValid = static_cast<const uint8_t*>(dev);
    if (op == Op::kFinalStep) return [p, first, s]() { return cuda::final_step(p, first, s); };
    if (op == Op::kRStep) return [p, first, last, s]() { return cuda::r_step(p, first, last, s); };
    return [p, final, s]() { return cuda::l_step(p, final, s); };
  }
#endif
  const int n = threads_;
  if (op == Op::kFinalStep) {
    return [p, first, n]() {
      cpu::ThreadsScope t(n);
      Status st = cpu::r_step(p, first, true);
      return st.ok ? cpu::l_step(p, true) : st;
    };
  }
  if (op == Op::kRStep) return [p, first, last, n]() { cpu::ThreadsScope t(n); return cpu::r_step(p, first, last); };
  return [p, final, n]() { cpu::ThreadsScope t(n); return cpu::l_step(p, final); };
}

// dense(args): DenseParams, filled here only.
std::function<Status()> Plan::DenseJob(const Napi::CallbackInfo& info, ArgContext& ctx) {
  Napi::Env env = info.Env();
  DenseCall c = ReadDenseArgs(env, info[0], ctx);
  AfterRead(env, ctx);
  DenseParams p = c.p;
#ifdef MONARCH_WITH_CUDA
  if (cuda_) {
    cuda::Stream s = stream_.get();
    const void* dev = nullptr;
    ThrowIfFailed(env, denseKeyValidSlot_.Upload(c.keyValid.data, c.keyValid.bytes, s, &dev));
    p.keyValid = static_cast<const uint8_t*>(dev);
    return [p, s]() { return cuda::dense(p, s); };
  }
#endif
  const int n = threads_;
  return [p, n]() { cpu::ThreadsScope t(n); return cpu::dense(p); };
}

// gather(args): GatherParams, filled here only.
std::function<Status()> Plan::GatherJob(const Napi::CallbackInfo& info, ArgContext& ctx) {
  Napi::Env env = info.Env();
  GatherCall c = ReadGatherArgs(env, info[0], ctx);
  AfterRead(env, ctx);
  GatherParams p = c.p;
  if (p.nDst == 0) return []() { return Status::Ok(); };
#ifdef MONARCH_WITH_CUDA
  if (cuda_) {
    cuda::Stream s = stream_.get();
    const void* dev = nullptr;
    ThrowIfFailed(env, mapSlot_.Upload(c.map.data, c.map.bytes, s, &dev));
    p.map = static_cast<const int32_t*>(dev);
    return [p, s]() { return cuda::gather_tokens(p, s); };
  }
#endif
  const int n = threads_;
  return [p, n]() { cpu::ThreadsScope t(n); return cpu::gather_tokens(p); };
}

Napi::Value Plan::Run(const Napi::CallbackInfo& info, Op op, bool async) {
  Napi::Env env = info.Env();
  const char* name = OpName(int(op), async);
  DeviceScope dev(device_, cuda_);  // CUDA: slot uploads and the enqueue run on the plan's device
  if (!async) {
    ThrowIfFailed(env, dev.status());
    CheckLive(env, name);
    CheckIdle(env, name);
    ArgContext ctx;
    ctx.op = name;
    ctx.cuda = cuda_;
    ctx.device = device_;
    std::function<Status()> job = BuildJob(info, op, ctx);
    ThrowIfFailed(env, job());  // CPU: computes here; CUDA: enqueues on the stream
    return env.Undefined();
  }
  Napi::Promise::Deferred settled = Napi::Promise::Deferred::New(env);
  try {
    ThrowIfFailed(env, dev.status());
    CheckLive(env, name);
    std::vector<Napi::ObjectReference> keep;
    ArgContext ctx;
    ctx.op = name;
    ctx.cuda = cuda_;
    ctx.device = device_;
    ctx.keep = cuda_ ? nullptr : &keep;
    ctx.secure = !cuda_;  // CPU workers read host memory off the main thread
    std::function<Status()> job = BuildJob(info, op, ctx);
    if (cuda_) {  // enqueue now; the Promise only says "enqueued"
      ThrowIfFailed(env, job());
      settled.Resolve(env.Undefined());
      return settled.Promise();
    }
    keep.push_back(Napi::Persistent(Value()));  // the plan (workspace) outlives the worker
    auto* w = new PlanWorker(env, name, &queue_, std::move(job), std::move(keep), std::move(ctx.holds));
    Napi::Promise promise = w->Promise();  // before Push: a worker Node refuses is deleted there
    queue_.Push(w);
    return promise;
  } catch (const Napi::Error& e) {
    settled.Reject(e.Value());
  } catch (const std::exception& e) {
    settled.Reject(Napi::Error::New(env, std::string(name) + ": " + e.what()).Value());
  }
  return settled.Promise();
}

void Plan::Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "synchronize");
  CheckIdle(env, "synchronize");  // CPU: sync calls have completed already; nothing to wait for
#ifdef MONARCH_WITH_CUDA
  if (cuda_) {
    DeviceScope dev(device_);
    ThrowIfFailed(env, dev.status());
    Status s = cuda::stream_sync(stream_.get());
    if (!s.ok) ThrowError(env, "synchronize: " + s.message);
    inflightHost_.clear();  // every copy enqueued so far has completed
  }
#endif
}

Napi::Value Plan::SynchronizeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred settled = Napi::Promise::Deferred::New(env);
  try {
    CheckLive(env, "synchronizeAsync");
    std::function<Status()> job = []() { return Status::Ok(); };  // CPU: resolves after earlier calls
#ifdef MONARCH_WITH_CUDA
    if (cuda_) {
      cuda::Stream s = stream_.get();
      // The copies enqueued so far are covered by this sync; their host blocks go with the job and are
      // released when the worker is deleted (after the sync, on the main thread).
      auto held = std::make_shared<std::vector<HostBlockRef>>(std::move(inflightHost_));
      inflightHost_.clear();
      job = [s, held, device = device_]() {
        DeviceScope dev(device);  // a libuv thread: make the plan's device current there too
        Status st = dev.status();
        if (st.ok) st = cuda::stream_sync(s);
        if (!st.ok) st.message = "synchronizeAsync: " + st.message;
        return st;
      };
    }
#endif
    return QueueWait(env, "monarch:synchronizeAsync", std::move(job));
  } catch (const Napi::Error& e) {
    settled.Reject(e.Value());
  }
  return settled.Promise();
}

// fenceAsync(): an event recorded on the stream now, waited for on a libuv thread (after the plan's
// earlier waits, in call order): it resolves once the work enqueued before the call has completed,
// whatever was enqueued since. CPU: resolves after the earlier async calls (as synchronizeAsync).
Napi::Value Plan::FenceAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred settled = Napi::Promise::Deferred::New(env);
  try {
    CheckLive(env, "fenceAsync");
    std::function<Status()> job = []() { return Status::Ok(); };
#ifdef MONARCH_WITH_CUDA
    if (cuda_) {
      DeviceScope dev(device_);  // the event is recorded on the plan's device
      ThrowIfFailed(env, dev.status());
      std::shared_ptr<FencePool::Lease> lease;
      Status s = fences_->Record(stream_.get(), &lease);
      if (!s.ok) ThrowError(env, "fenceAsync: " + s.message);
      // The copies enqueued so far come before the event: their host blocks go with the fence.
      auto held = std::make_shared<std::vector<HostBlockRef>>(std::move(inflightHost_));
      inflightHost_.clear();
      job = [lease, held, device = device_]() {
        Status st = FenceWait(*lease, device);
        if (!st.ok) st.message = "fenceAsync: " + st.message;
        return st;
      };
    }
#endif
    return QueueWait(env, "monarch:fenceAsync", std::move(job));
  } catch (const Napi::Error& e) {
    settled.Reject(e.Value());
  }
  return settled.Promise();
}

Napi::Value Plan::QueueWait(Napi::Env env, const char* name, std::function<Status()> job) {
  std::vector<Napi::ObjectReference> keep;
  keep.push_back(Napi::Persistent(Value()));  // the plan outlives the worker
  auto* w = new PlanWorker(env, name, &queue_, std::move(job), std::move(keep));
  Napi::Promise promise = w->Promise();  // before Push: a worker Node refuses is deleted there
  queue_.Push(w);
  return promise;
}

Napi::Value Plan::RecordEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "recordEvent");
  if (!cuda_) ThrowError(env, "recordEvent: events need the CUDA backend");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  int index = -1;
  Status s = events_.Record(stream_.get(), &index);
  if (!s.ok) ThrowError(env, "recordEvent: " + s.message);
  return Napi::Number::New(env, index);
#else
  return env.Undefined();
#endif
}

Napi::Value Plan::EventElapsedMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "eventElapsedMs");
  if (!cuda_) ThrowError(env, "eventElapsedMs: events need the CUDA backend");
#ifdef MONARCH_WITH_CUDA
  const int64_t hi = int64_t(events_.size()) - 1;
  if (hi < 0) ThrowRangeError(env, "eventElapsedMs: no events recorded (call recordEvent first)");
  int start = int(ToInt(env, info[0], "eventElapsedMs: start", 0, hi));
  int end = int(ToInt(env, info[1], "eventElapsedMs: end", 0, hi));
  float ms = 0.f;
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status s = events_.ElapsedMs(start, end, &ms);
  if (!s.ok) ThrowError(env, "eventElapsedMs: " + s.message);
  return Napi::Number::New(env, ms);
#else
  return env.Undefined();
#endif
}

void Plan::ReleaseEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "releaseEvents");
  if (!cuda_) ThrowError(env, "releaseEvents: events need the CUDA backend");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  events_.Release();
#endif
}

Napi::Value Plan::GetStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "stream");
#ifdef MONARCH_WITH_CUDA
  if (cuda_) return Napi::BigInt::New(env, uint64_t(reinterpret_cast<uintptr_t>(stream_.get())));
#endif
  return env.Null();
}

// waitEvent(handle) / recordEventHandle(handle): stream-ordered interop with a caller's cudaEvent_t.
void Plan::WaitEvent(const Napi::CallbackInfo& info) { EventOp(info, true); }
void Plan::RecordEventHandle(const Napi::CallbackInfo& info) { EventOp(info, false); }

void Plan::EventOp(const Napi::CallbackInfo& info, bool wait) {
  Napi::Env env = info.Env();
  const char* name = wait ? "waitEvent" : "recordEventHandle";
  CheckLive(env, name);
  void* ev = ToHandle(env, info[0], std::string(name) + ": event");
  if (!cuda_) ThrowError(env, std::string(name) + ": events need the CUDA backend");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status s = wait ? StreamWaitEvent(stream_.get(), ev) : EventRecord(ev, stream_.get());
  if (!s.ok) ThrowError(env, std::string(name) + ": " + s.message);
#else
  (void)ev;
#endif
}

// Idempotent. Waiting async calls are rejected with "Plan was disposed"; a running one completes and
// the resources are freed after it.
void Plan::Dispose(const Napi::CallbackInfo&) {
  if (disposed_) return;
  disposed_ = true;
  queue_.RejectPending("Plan was disposed");
  if (!queue_.busy()) FreeResources();
}

}  // namespace binding
}  // namespace monarch
