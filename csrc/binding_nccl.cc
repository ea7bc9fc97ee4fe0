// binding_nccl.cc — the NCCL communicator for JS (see binding_nccl.h for the execution model).
#include "binding_nccl.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "binding_device_buffer.h"
#include "binding_nccl_api.h"
#include "binding_safe_worker.h"

#ifdef MONARCH_WITH_CUDA
#include <cuda_runtime_api.h>

#include "binding_cuda.h"
#endif

namespace monarch {
namespace binding {
namespace {

using Clock = std::chrono::steady_clock;

// load(candidates: string[]) → { path, version }; throws listing every candidate's failure.
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    ThrowTypeError(env, "nccl.load: candidates must be an array of strings, received " + DescribeValue(info[0]));
  }
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<std::string> candidates;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) ThrowTypeError(env, "nccl.load: candidates[" + std::to_string(i) + "] must be a string, received " + DescribeValue(v));
    candidates.push_back(v.As<Napi::String>().Utf8Value());
  }
  std::string path, error;
  int version = 0;
  if (!nccl::Load(candidates, &path, &version, &error)) ThrowError(env, "NCCL is unavailable: " + error);
  Napi::Object out = Napi::Object::New(env);
  out.Set("path", path);
  out.Set("version", version);
  return out;
}

const nccl::Api& LoadedApi(Napi::Env env, const char* what) {
  const nccl::Api* api = nccl::Loaded();
  if (!api) ThrowError(env, std::string(what) + ": NCCL is not loaded (lib/nccl.ts loads it first)");
  return *api;
}

// uniqueId() → Uint8Array(128): a new ncclUniqueId for rank 0 to hand to the others.
Napi::Value UniqueIdFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const nccl::Api& api = LoadedApi(env, "nccl.uniqueId");
  nccl::UniqueId id;
  int r = api.getUniqueId(&id);
  if (r != nccl::kSuccess) ThrowError(env, "ncclGetUniqueId failed: " + nccl::Describe(api, r));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, nccl::kUniqueIdBytes);
  std::memcpy(out.Data(), id.internal, nccl::kUniqueIdBytes);
  return out;
}

// A promise-returning worker running `job` (returns "" or an error message) off the event loop, then
// `done` on the main thread (always once, also when the environment is closing: SafeWorker).
class CommWorker : public SafeWorker {
 public:
  CommWorker(Napi::Env env, const char* name, std::function<std::string()> job, std::function<void()> done,
             std::vector<Napi::ObjectReference> keep)
      : SafeWorker(env, name), job_(std::move(job)), done_(std::move(done)), keep_(std::move(keep)) {}

 protected:
  void Run() override {
    std::string e = job_();
    if (!e.empty()) Fail(e);
  }
  void Finish(bool) override { done_(); }

 private:
  std::function<std::string()> job_;
  std::function<void()> done_;
  std::vector<Napi::ObjectReference> keep_;
};

#ifdef MONARCH_WITH_CUDA

// One region of a part for one peer (bytes), and where it sits in staging when it is strided.
struct Region {
  int64_t offset = 0, rows = 0, rowBytes = 0, pitch = 0;
  size_t stage = 0;  // offset into the send (or recv) staging buffer when staged
  int64_t bytes() const { return rows * rowBytes; }
  bool contiguous() const { return rows <= 1 || pitch == rowBytes; }
};

struct Part {
  char* src = nullptr;
  char* dst = nullptr;
  std::vector<Region> send, recv;
};

constexpr size_t kStageAlign = 256;  // cudaMalloc alignment; keeps every staged region aligned

size_t AlignUp(size_t x) { return (x + kStageAlign - 1) / kStageAlign * kStageAlign; }

cudaError_t Copy2D(char* dst, size_t dpitch, const char* src, size_t spitch, size_t width, size_t rows, cudaStream_t s) {
  if (width == 0 || rows == 0) return cudaSuccess;
  return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, s);
}

#endif  // MONARCH_WITH_CUDA

class NcclComm : public Napi::ObjectWrap<NcclComm> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NcclComm", {
      InstanceMethod<&NcclComm::InitAsync>("init"),
      InstanceMethod<&NcclComm::AllToAll>("allToAll"),
      InstanceMethod<&NcclComm::Abort>("abort"),
      InstanceMethod<&NcclComm::Dispose>("dispose"),
      InstanceAccessor<&NcclComm::GetFailure>("failure"),
      InstanceAccessor<&NcclComm::GetBusy>("busy"),
    });
  }

  explicit NcclComm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NcclComm>(info) {
    Napi::Env env = info.Env();
#ifdef MONARCH_WITH_CUDA
    const std::string& reason = CudaUnavailableReason();
    if (!reason.empty()) ThrowError(env, "NCCL communicator: CUDA backend unavailable: " + reason);
    LoadedApi(env, "NcclComm");
    Status s = stream_.Create();
    if (!s.ok) ThrowError(env, "NcclComm: " + s.message);
#else
    ThrowError(env, "NCCL communicator: CUDA backend unavailable: the addon was built without CUDA");
#endif
  }

  ~NcclComm() override {
#ifdef MONARCH_WITH_CUDA
    if (busy_) {  // environment teardown under a running worker: leak rather than free under it
      stream_.Abandon();
      sendStage_.Abandon();
      recvStage_.Abandon();
      return;
    }
    Free();
#endif
  }

 private:
  void CheckUsable(Napi::Env env, const char* method) {
    if (disposed_) ThrowError(env, std::string("NcclComm was disposed (") + method + ")");
    if (busy_) ThrowError(env, std::string("NcclComm.") + method + ": another operation is in flight; await it first");
    if (!failure_.empty()) ThrowError(env, "NCCL communicator was aborted: " + failure_);
  }

  Napi::Value GetFailure(const Napi::CallbackInfo& info) {
    if (failure_.empty()) return info.Env().Null();
    return Napi::String::New(info.Env(), failure_);
  }
  Napi::Value GetBusy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), busy_); }

#ifdef MONARCH_WITH_CUDA
  // Worker thread. Records the failure and aborts the communicator (ncclCommAbort frees it).
  std::string Fail(const std::string& msg) {
    if (comm_) api_->commAbort(comm_);
    comm_ = nullptr;
    failure_ = msg;
    return msg;
  }

  // Worker thread: waits until the communicator has no operation in progress (and, with `stream`, until
  // the stream has drained), failing on an NCCL error, the deadline or abort().
  std::string Wait(const std::string& what, Clock::time_point deadline, int64_t timeoutMs, bool stream) {
    for (;;) {
      int st = nccl::kSuccess;
      int r = api_->commGetAsyncError(comm_, &st);
      if (r != nccl::kSuccess) return Fail(what + ": ncclCommGetAsyncError failed: " + nccl::Describe(*api_, r));
      if (st != nccl::kSuccess && st != nccl::kInProgress) {
        return Fail(what + " failed on rank " + std::to_string(rank_) + ": " + nccl::Describe(*api_, st) +
                    (st == nccl::kRemoteError ? " (a peer exited or the network failed)" : ""));
      }
      if (st == nccl::kSuccess) {
        if (!stream) return "";
        cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(stream_.get()));
        if (e == cudaSuccess) return "";
        if (e != cudaErrorNotReady) return Fail(what + ": CUDA error " + cudaGetErrorString(e));
      }
      if (abort_.load(std::memory_order_acquire)) return Fail(what + " aborted: " + abortReason_);
      if (Clock::now() > deadline) {
        return Fail(what + " timed out after " + std::to_string(timeoutMs) + " ms on rank " + std::to_string(rank_) +
                    ": a peer died, hangs or has not called it (the communicator was aborted)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
#endif

  // init(id: Uint8Array(128), nranks, rank, timeoutMs) → Promise<void>
  Napi::Value InitAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckUsable(env, "init");
#ifdef MONARCH_WITH_CUDA
    if (comm_ || size_ > 0) ThrowError(env, "NcclComm.init: already initialised");
    if (info.Length() < 4 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError(env, "NcclComm.init: id must be a Uint8Array, received " + DescribeValue(info[0]));
    }
    Napi::Uint8Array idArr = info[0].As<Napi::Uint8Array>();
    if (idArr.ElementLength() != nccl::kUniqueIdBytes) {
      ThrowRangeError(env, "NcclComm.init: id has " + std::to_string(idArr.ElementLength()) + " bytes, expected 128 (ncclUniqueId)");
    }
    int nranks = static_cast<int>(ToInt(env, info[1], "NcclComm.init: nranks", 1, 65536));
    int rank = static_cast<int>(ToInt(env, info[2], "NcclComm.init: rank", 0, nranks - 1));
    int64_t timeoutMs = ToInt(env, info[3], "NcclComm.init: timeoutMs", 1, kMaxInt32);
    nccl::UniqueId id;
    std::memcpy(id.internal, idArr.Data(), nccl::kUniqueIdBytes);
    api_ = nccl::Loaded();
    rank_ = rank;
    size_ = nranks;
    auto job = [this, id, nranks, rank, timeoutMs]() -> std::string {
      Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
      nccl::Comm c = nullptr;
      int r = api_->commInitRank(&c, nranks, id, rank);
      if (r != nccl::kSuccess && r != nccl::kInProgress) {
        if (c) api_->commAbort(c);
        failure_ = "ncclCommInitRank failed on rank " + std::to_string(rank) + ": " + nccl::Describe(*api_, r);
        return failure_;
      }
      comm_ = c;
      return Wait("NCCL communicator init (" + std::to_string(nranks) + " ranks)", deadline, timeoutMs, false);
    };
    return Start(env, "monarch:NcclComm.init", job, {});
#else
    return env.Undefined();
#endif
  }

  // allToAll(parts, timeoutMs) → Promise<void> (see binding_nccl.h)
  Napi::Value AllToAll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckUsable(env, "allToAll");
#ifdef MONARCH_WITH_CUDA
    if (!comm_) ThrowError(env, "NcclComm.allToAll: call init() first");
    if (info.Length() < 2 || !info[0].IsArray()) ThrowTypeError(env, "NcclComm.allToAll: parts must be an array, received " + DescribeValue(info[0]));
    int64_t timeoutMs = ToInt(env, info[1], "NcclComm.allToAll: timeoutMs", 1, kMaxInt32);
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<Part> parts;
    std::vector<Napi::ObjectReference> keep;
    std::vector<DeviceBuffer*> buffers;
    size_t sendStage = 0, recvStage = 0;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      std::string where = "NcclComm.allToAll: parts[" + std::to_string(i) + "]";
      Napi::Object p = ToObject(env, arr.Get(i), where);
      Part part;
      DeviceBuffer* bufs[2];
      const char* keys[2] = {"src", "dst"};
      for (int j = 0; j < 2; j++) {
        Napi::Value v = p.Get(keys[j]);
        bufs[j] = DeviceBuffer::FromValue(env, v);
        if (!bufs[j]) ThrowTypeError(env, where + "." + keys[j] + " must be a DeviceBuffer, received " + DescribeValue(v));
        if (bufs[j]->disposed()) ThrowError(env, where + "." + keys[j] + ": DeviceBuffer was disposed");
        keep.push_back(Napi::Persistent(v.As<Napi::Object>()));
        buffers.push_back(bufs[j]);
      }
      part.src = static_cast<char*>(bufs[0]->data());
      part.dst = static_cast<char*>(bufs[1]->data());
      const char* lists[2] = {"send", "recv"};
      for (int j = 0; j < 2; j++) {
        Napi::Value v = p.Get(lists[j]);
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
            v.As<Napi::TypedArray>().ElementLength() != static_cast<size_t>(4 * size_)) {
          ThrowTypeError(env, where + "." + lists[j] + " must be a Float64Array of 4·" + std::to_string(size_) + " numbers, received " + DescribeValue(v));
        }
        Napi::Float64Array f = v.As<Napi::Float64Array>();
        std::vector<Region>& out = j == 0 ? part.send : part.recv;
        int64_t limit = static_cast<int64_t>(bufs[j]->byteLength());
        for (int peer = 0; peer < size_; peer++) {
          std::string w = where + "." + lists[j] + "[" + std::to_string(peer) + "]";
          Region r;
          int64_t* fields[4] = {&r.offset, &r.rows, &r.rowBytes, &r.pitch};
          for (int k = 0; k < 4; k++) *fields[k] = ToInt(env, Napi::Number::New(env, f[4 * peer + k]), w, 0, kMaxSafeInteger);
          int64_t span = 0, end = 0;
          if (r.bytes() > 0 && (!MulOk(r.rows - 1, r.pitch, &span) || !AddOk(span, r.offset, &end) || !AddOk(end, r.rowBytes, &end) || end > limit)) {
            ThrowRangeError(env, w + " runs past the " + std::to_string(limit) + " bytes of parts[" + std::to_string(i) + "]." + keys[j]);
          }
          if (r.rows > 1 && r.pitch < r.rowBytes) ThrowRangeError(env, w + ": pitch < rowBytes");
          out.push_back(r);
        }
      }
      // Staging: strided regions of peers (and a strided-to-strided local copy) go through staging.
      for (int peer = 0; peer < size_; peer++) {
        Region& s = part.send[peer];
        Region& r = part.recv[peer];
        bool self = peer == rank_;
        if (s.bytes() > 0 && !s.contiguous() && (!self || !r.contiguous())) { s.stage = sendStage; sendStage += AlignUp(s.bytes()); }
        if (r.bytes() > 0 && !r.contiguous() && !self) { r.stage = recvStage; recvStage += AlignUp(r.bytes()); }
        if (self && s.bytes() != r.bytes()) {
          ThrowRangeError(env, where + ": this rank sends " + std::to_string(s.bytes()) + " bytes to itself but expects " + std::to_string(r.bytes()));
        }
      }
      parts.push_back(std::move(part));
    }
    Status st = Grow(&sendStage_, sendStage);
    if (st.ok) st = Grow(&recvStage_, recvStage);
    if (!st.ok) ThrowError(env, "NcclComm.allToAll: staging: " + st.message);
    for (DeviceBuffer* b : buffers) b->BeginAsync();
    char* sstage = static_cast<char*>(sendStage_.get());
    char* rstage = static_cast<char*>(recvStage_.get());
    auto job = [this, parts = std::move(parts), timeoutMs, sstage, rstage]() -> std::string {
      Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
      cudaStream_t s = static_cast<cudaStream_t>(stream_.get());
      auto cuda = [this](cudaError_t e, const char* what) -> std::string {
        return e == cudaSuccess ? std::string() : Fail(std::string("allToAll: ") + what + ": " + cudaGetErrorString(e));
      };
      std::string e;
      // 1. Pack strided sends into staging; local copies.
      for (const Part& p : parts) {
        for (int peer = 0; peer < size_ && e.empty(); peer++) {
          const Region& sd = p.send[peer];
          const Region& rv = p.recv[peer];
          if (sd.bytes() == 0) continue;
          bool staged = !sd.contiguous() && (peer != rank_ || !rv.contiguous());
          if (staged) e = cuda(Copy2D(sstage + sd.stage, sd.rowBytes, p.src + sd.offset, sd.pitch, sd.rowBytes, sd.rows, s), "pack");
          if (!e.empty() || peer != rank_) continue;
          // The bytes to copy locally, linear: in place or in staging.
          if (sd.contiguous() || staged) {
            const char* lin = staged ? sstage + sd.stage : p.src + sd.offset;
            e = rv.contiguous() ? cuda(cudaMemcpyAsync(p.dst + rv.offset, lin, rv.bytes(), cudaMemcpyDeviceToDevice, s), "local copy")
                                : cuda(Copy2D(p.dst + rv.offset, rv.pitch, lin, rv.rowBytes, rv.rowBytes, rv.rows, s), "local copy");
          } else {  // strided send into a contiguous receive
            e = cuda(Copy2D(p.dst + rv.offset, sd.rowBytes, p.src + sd.offset, sd.pitch, sd.rowBytes, sd.rows, s), "local copy");
          }
        }
        if (!e.empty()) return e;
      }
      // 2. One group: every send and receive of every part with every peer.
      if (size_ > 1) {
        int r = api_->groupStart();
        if (r != nccl::kSuccess) return Fail("allToAll: ncclGroupStart failed: " + nccl::Describe(*api_, r));
        int bad = nccl::kSuccess;
        for (const Part& p : parts) {
          for (int peer = 0; peer < size_; peer++) {
            if (peer == rank_) continue;
            const Region& sd = p.send[peer];
            const Region& rv = p.recv[peer];
            if (sd.bytes() > 0 && bad == nccl::kSuccess) {
              const char* from = sd.contiguous() ? p.src + sd.offset : sstage + sd.stage;
              int x = api_->send(from, static_cast<size_t>(sd.bytes()), nccl::kInt8, peer, comm_, s);
              if (x != nccl::kSuccess && x != nccl::kInProgress) bad = x;
            }
            if (rv.bytes() > 0 && bad == nccl::kSuccess) {
              char* to = rv.contiguous() ? p.dst + rv.offset : rstage + rv.stage;
              int x = api_->recv(to, static_cast<size_t>(rv.bytes()), nccl::kInt8, peer, comm_, s);
              if (x != nccl::kSuccess && x != nccl::kInProgress) bad = x;
            }
          }
        }
        r = api_->groupEnd();
        if (bad != nccl::kSuccess) return Fail("allToAll: ncclSend/ncclRecv failed: " + nccl::Describe(*api_, bad));
        if (r != nccl::kSuccess && r != nccl::kInProgress) return Fail("allToAll: ncclGroupEnd failed: " + nccl::Describe(*api_, r));
        e = Wait("allToAll (enqueue)", deadline, timeoutMs, false);
        if (!e.empty()) return e;
      }
      // 3. Unpack strided receives.
      for (const Part& p : parts) {
        for (int peer = 0; peer < size_ && e.empty(); peer++) {
          const Region& rv = p.recv[peer];
          if (peer == rank_ || rv.bytes() == 0 || rv.contiguous()) continue;
          e = cuda(Copy2D(p.dst + rv.offset, rv.pitch, rstage + rv.stage, rv.rowBytes, rv.rowBytes, rv.rows, s), "unpack");
        }
        if (!e.empty()) return e;
      }
      return Wait("allToAll", deadline, timeoutMs, true);
    };
    return Start(env, "monarch:NcclComm.allToAll", job, std::move(keep), [buffers]() {
      for (DeviceBuffer* b : buffers) b->EndAsync();
    });
#else
    return env.Undefined();
#endif
  }

#ifdef MONARCH_WITH_CUDA
  static Status Grow(DeviceMem* m, size_t bytes) {
    if (bytes == 0 || m->bytes() >= bytes) return Status::Ok();
    return m->Allocate(bytes);
  }
#endif

  Napi::Value Start(Napi::Env env, const char* name, std::function<std::string()> job, std::vector<Napi::ObjectReference> keep,
                    std::function<void()> after = nullptr) {
    keep.push_back(Napi::Persistent(Value()));
    busy_ = true;
    auto* w = new CommWorker(env, name, std::move(job), [this, after]() {
      busy_ = false;
      if (after) after();
      if (disposePending_) Free();
    }, std::move(keep));
    Napi::Promise p = w->Promise();
    if (!w->TryQueue()) {
      busy_ = false;
      if (after) after();
      w->DropUnqueued(std::string(name) + ": the environment is closing");
    }
    return p;
  }

  // abort(reason?): fails the operation in flight (within ~100 µs) and every later call.
  void Abort(const Napi::CallbackInfo& info) {
    AbortWith(info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "aborted by the caller");
  }

  void AbortWith(const std::string& reason) {
    if (busy_) {
      if (!abort_.load()) {
        abortReason_ = reason;
        abort_.store(true, std::memory_order_release);
      }
      return;
    }
#ifdef MONARCH_WITH_CUDA
    if (comm_) api_->commAbort(comm_);
    comm_ = nullptr;
#endif
    if (failure_.empty()) failure_ = reason;
  }

  // dispose(): ncclCommAbort (every earlier operation has completed), frees the stream and staging.
  void Dispose(const Napi::CallbackInfo&) {
    if (disposed_) return;
    disposed_ = true;
    if (busy_) {
      disposePending_ = true;
      AbortWith("the communicator was disposed");
      return;
    }
    Free();
  }

  void Free() {
#ifdef MONARCH_WITH_CUDA
    if (comm_) api_->commAbort(comm_);
    comm_ = nullptr;
    stream_.Reset();
    sendStage_.Reset();
    recvStage_.Reset();
#endif
    if (failure_.empty()) failure_ = "the communicator was disposed";
  }

  const nccl::Api* api_ = nullptr;
  nccl::Comm comm_ = nullptr;
  int rank_ = -1, size_ = 0;
  bool busy_ = false, disposed_ = false, disposePending_ = false;
  std::atomic<bool> abort_{false};
  std::string abortReason_;  // written before abort_ is set (release), read after it is seen (acquire)
  std::string failure_;      // written by the worker only while busy_
#ifdef MONARCH_WITH_CUDA
  StreamHandle stream_;
  DeviceMem sendStage_, recvStage_;
#endif
};

}  // namespace

Napi::Object InitNccl(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New<Load>(env, "load"));
  o.Set("uniqueId", Napi::Function::New<UniqueIdFn>(env, "uniqueId"));
  o.Set("Comm", NcclComm::Init(env));
  return o;
}

}  // namespace binding
}  // namespace monarch
