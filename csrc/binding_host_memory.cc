// binding_host_memory.cc — addon host memory, typed-array spans and HostHolds (see
// binding_host_memory.h).
#include "binding_host_memory.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <thread>
#include <vector>

#include "binding_safe_worker.h"

#ifdef MONARCH_WITH_CUDA
#include "binding_cuda.h"
#endif

namespace monarch {
namespace binding {

struct HostBlock {
  uint8_t* ptr = nullptr;
  size_t bytes = 0;
  bool pinned = false;
  int refs = 0;  // guarded by g_mutex
};

namespace {

std::mutex g_mutex;                               // guards g_blocks, every HostBlock::refs, g_counters
std::map<uintptr_t, HostBlock*> g_blocks;         // base address → block
MemoryCounters g_counters;

void FreeBlockLocked(HostBlock* b) {
  g_blocks.erase(reinterpret_cast<uintptr_t>(b->ptr));
  g_counters.hostBlocksLive--;
  g_counters.hostBytesLive -= b->bytes;
  if (b->pinned) g_counters.pinnedBytesLive -= b->bytes;
#ifdef MONARCH_WITH_CUDA
  if (b->pinned) {
    FreePinnedHost(b->ptr);
    delete b;
    return;
  }
#endif
  std::free(b->ptr);
  delete b;
}

void Unref(HostBlock* b) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (--b->refs == 0) FreeBlockLocked(b);
}

// Finalizer of the external ArrayBuffer: reverses the external-memory report of AllocHost and drops
// the JS buffer's reference (in-flight work may still hold the block).
void FinalizeBlock(Napi::Env env, void*, HostBlock* b) {
  int64_t ignored = 0;
  napi_adjust_external_memory(env, -int64_t(b->bytes), &ignored);
  Unref(b);
}

}  // namespace

HostBlockRef::HostBlockRef(HostBlock* b, AdoptTag) : b_(b) {}

HostBlockRef::HostBlockRef(HostBlock* b) : b_(b) {
  if (b_) {
    std::lock_guard<std::mutex> lock(g_mutex);
    b_->refs++;
  }
}

bool HostBlockRef::pinned() const { return b_ != nullptr && b_->pinned; }

HostBlockRef::~HostBlockRef() {
  if (b_) Unref(b_);
}

HostBlockRef& HostBlockRef::operator=(HostBlockRef&& o) noexcept {
  if (this != &o) {
    if (b_) Unref(b_);
    b_ = o.b_;
    o.b_ = nullptr;
  }
  return *this;
}

HostBlockRef FindHostBlock(const void* p, size_t bytes) {
  if (!p) return HostBlockRef();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_blocks.upper_bound(a);
  if (it == g_blocks.begin()) return HostBlockRef();
  --it;
  HostBlock* b = it->second;
  if (a < it->first || a - it->first > b->bytes || bytes > b->bytes - (a - it->first)) return HostBlockRef();
  b->refs++;  // taken under the lock, so the block cannot be freed in between
  return HostBlockRef(b, HostBlockRef::kAdopt);
}

TypedSpan GetTypedSpan(Napi::Env env, const Napi::TypedArray& a) {
  TypedSpan s;
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value ab = nullptr;
  if (napi_get_typedarray_info(env, a, &type, &length, &data, &ab, &offset) != napi_ok) {
    ThrowError(env, "could not read a typed array");
  }
  bool isAb = false;
  napi_is_arraybuffer(env, ab, &isAb);
  s.shared = !isAb;  // a typed array is backed by an ArrayBuffer or a SharedArrayBuffer
  if (isAb) {
    bool detached = false;
    napi_is_detached_arraybuffer(env, ab, &detached);
    s.detached = detached;
  }
  s.bytes = s.detached ? 0 : a.ByteLength();
  s.data = s.detached ? nullptr : data;
  return s;
}

HostMemory ClassifySpan(const TypedSpan& s) {
  if (s.shared) return HostMemory::kShared;
  if (s.data && FindHostBlock(s.data, s.bytes)) return HostMemory::kAddon;
  return HostMemory::kOrdinary;
}

void ParallelCopy(void* dst, const void* src, size_t bytes) {
  // One thread per 2 MiB (below 4 MiB one memcpy beats starting threads): a 16 MiB staging slice is
  // copied on 8 threads. One memcpy thread reaches a fraction of a server's memory bandwidth (the
  // H200 host: 16 MiB slices on 4 threads staged 302 MB at ~14 GB/s).
  constexpr size_t kChunk = size_t(2) << 20;
  const int threads = int(std::min<size_t>(size_t(std::max(1, cpu::num_threads())), bytes / kChunk));
  if (threads <= 1) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  // Contiguous slices, one per thread (the calling thread takes the last); memcpy cannot fail.
  const size_t per = (bytes + size_t(threads) - 1) / size_t(threads);
  auto part = [&](int t) {
    const size_t a = size_t(t) * per, b = std::min(bytes, a + per);
    if (a < b) std::memcpy(static_cast<uint8_t*>(dst) + a, static_cast<const uint8_t*>(src) + a, b - a);
  };
  std::vector<std::thread> pool;
  int started = 0;
  try {
    for (; started < threads - 1; ++started) pool.emplace_back(part, started);
  } catch (...) {  // no more threads: this thread copies the rest
  }
  for (int t = started; t < threads; ++t) part(t);
  for (std::thread& th : pool) th.join();
}

void* HostHolds::Secure(Napi::Env env, const Napi::TypedArray& a, void* data, size_t bytes, bool writes,
                        bool copyAlways, const std::string& name) {
  if (bytes == 0 || data == nullptr) return data;
  TypedSpan s = GetTypedSpan(env, a);
  if (!copyAlways) {
    if (s.shared) return data;  // the typed array is referenced by the caller's keep list
    HostBlockRef r = FindHostBlock(data, bytes);
    if (r) {
      blocks_.push_back(std::move(r));
      return data;
    }
  }
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[bytes]);
  if (!buf) ThrowRangeError(env, name + ": out of host memory staging " + std::to_string(bytes) + " bytes");
  ParallelCopy(buf.get(), data, bytes);
  CountStagingCopy(bytes);
  copiedBytes_ += bytes;
  void* p = buf.get();
  if (writes && !copyAlways) {
    writeBacks_.push_back({Napi::Reference<Napi::TypedArray>::New(a, 1), data, bytes, std::move(buf), name});
  } else {
    snapshots_.push_back(std::move(buf));
  }
  return p;
}

std::string HostHolds::CopyBack(Napi::Env env) {
  for (Copy& c : writeBacks_) {
    Napi::TypedArray a = c.array.Value();
    TypedSpan now = GetTypedSpan(env, a);
    if (now.detached || now.data != c.data || now.bytes < c.bytes) {
      return c.name + ": the output array was detached or resized while the call ran; its result was dropped";
    }
    ParallelCopy(c.data, c.buf.get(), c.bytes);
  }
  writeBacks_.clear();
  return "";
}

MemoryCounters GetMemoryCounters() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_counters;
}
void CountDeviceAlloc(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_counters.deviceAllocations++;
  g_counters.deviceBytesLive += bytes;
}
void CountDeviceFree(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_counters.deviceFrees++;
  g_counters.deviceBytesLive -= std::min<uint64_t>(bytes, g_counters.deviceBytesLive);
}
void CountStagingCopy(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_counters.stagingCopies++;
  g_counters.stagingBytes += bytes;
}

Napi::Value AllocHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = ToInt(env, info[0], "allocHost: bytes", 1, kMaxSafeInteger);
  const bool wantPinned = info.Length() > 1 && ToBool(env, info[1], "allocHost: pinned");
  // zero = false: the caller overwrites every byte before reading any (staging, download targets), so
  // a pinned block skips its memset (~100 MB: tens of ms on the main thread). calloc memory is zero anyway.
  const bool zero = info.Length() < 3 || info[2].IsUndefined() || ToBool(env, info[2], "allocHost: zero");
  auto* b = new HostBlock();
  b->bytes = size_t(bytes);
#ifdef MONARCH_WITH_CUDA
  if (wantPinned && CudaUnavailableReason().empty()) {
    void* p = nullptr;
    if (AllocPinnedHost(&p, b->bytes).ok) {
      if (zero) std::memset(p, 0, b->bytes);
      b->ptr = static_cast<uint8_t*>(p);
      b->pinned = true;
    }
  }
#else
  (void)wantPinned;
  (void)zero;
#endif
  if (!b->ptr) b->ptr = static_cast<uint8_t*>(std::calloc(b->bytes, 1));  // large: fresh zero pages
  if (!b->ptr) {
    delete b;
    ThrowRangeError(env, "allocHost: out of host memory allocating " + std::to_string(bytes) + " bytes");
  }
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    // Two references: the JS ArrayBuffer's (dropped by FinalizeBlock) and this call's, dropped below.
    // Node runs the finalizer at once when it cannot create the buffer (e.g. past its maximum
    // length), so the block must outlive that until this call lets go of it.
    b->refs = 2;
    g_blocks[reinterpret_cast<uintptr_t>(b->ptr)] = b;
    g_counters.hostBlocks++;
    g_counters.hostBlocksLive++;
    g_counters.hostBytesLive += b->bytes;
    if (b->pinned) g_counters.pinnedBytesLive += b->bytes;
  }
  // Tell V8 about the memory behind the external buffer (pinned staging and host outputs included), so
  // that dropping such buffers puts pressure on the garbage collector; FinalizeBlock reverses it (also
  // when Node finalizes a buffer it failed to create).
  int64_t ignored = 0;
  napi_adjust_external_memory(env, int64_t(b->bytes), &ignored);
  Napi::ArrayBuffer ab;
  try {
    ab = Napi::ArrayBuffer::New(env, b->ptr, b->bytes, FinalizeBlock, b);
  } catch (...) {
    Unref(b);  // this call's reference; the JS one went with the finalizer (or leaks one block if
               // Node failed without finalizing: never seen, and better than a double free)
    throw Napi::RangeError::New(env, "allocHost: Node could not create an ArrayBuffer of " + std::to_string(bytes) +
                                         " bytes (past its maximum length?)");
  }
  Unref(b);
  return ab;
}

Napi::Value HostMemoryKind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) ThrowTypeError(env, "hostMemoryKind: expected a typed array, got " + DescribeValue(info[0]));
  return Napi::Number::New(env, int(ClassifySpan(GetTypedSpan(env, info[0].As<Napi::TypedArray>()))));
}

Napi::Value IsPinnedHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) ThrowTypeError(env, "isPinnedHost: expected a typed array, got " + DescribeValue(info[0]));
  TypedSpan s = GetTypedSpan(env, info[0].As<Napi::TypedArray>());
  const bool pinned = !s.shared && !s.detached && FindHostBlock(s.data, s.bytes).pinned();
  return Napi::Boolean::New(env, pinned);
}

void CopyHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) {
    ThrowTypeError(env, "copyHost: dst and src must be typed arrays, got " + DescribeValue(info[0]) + " and " +
                            DescribeValue(info[1]));
  }
  TypedSpan d = GetTypedSpan(env, info[0].As<Napi::TypedArray>());
  TypedSpan s = GetTypedSpan(env, info[1].As<Napi::TypedArray>());
  if (d.detached || s.detached) ThrowError(env, "copyHost: an array is detached");
  if (d.bytes != s.bytes) {
    ThrowRangeError(env, "copyHost: dst has " + std::to_string(d.bytes) + " bytes, src " + std::to_string(s.bytes));
  }
  ParallelCopy(d.data, s.data, d.bytes);  // both spans are valid for the whole (synchronous) copy
  CountStagingCopy(d.bytes);
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MemoryCounters c = GetMemoryCounters();
  Napi::Object o = Napi::Object::New(env);
  o.Set("deviceAllocations", double(c.deviceAllocations));
  o.Set("deviceFrees", double(c.deviceFrees));
  o.Set("deviceBytes", double(c.deviceBytesLive));
  o.Set("hostAllocations", double(c.hostBlocks));
  o.Set("hostBlocks", double(c.hostBlocksLive));
  o.Set("hostBytes", double(c.hostBytesLive));
  o.Set("pinnedBytes", double(c.pinnedBytesLive));
  o.Set("stagingCopies", double(c.stagingCopies));
  o.Set("stagingBytes", double(c.stagingBytes));
  return o;
}

namespace {

// cloneHostAsync: the copy into a new ArrayBuffer that no JS code can see until it settles. Completion
// goes through SafeWorker, so finishing during environment teardown neither throws nor aborts.
class CloneWorker : public SafeWorker {
 public:
  CloneWorker(Napi::Env env, napi_typedarray_type type, const void* src, size_t bytes, HostBlockRef block,
              std::unique_ptr<uint8_t[]> snapshot)
      : SafeWorker(env, "monarch:cloneHostAsync"),
        type_(type),
        src_(src),
        bytes_(bytes),
        block_(std::move(block)),
        snapshot_(std::move(snapshot)) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes_);
    dst_ = ab.Data();
    host_ = Napi::Persistent(ab);
  }

 protected:
  void Run() override { ParallelCopy(dst_, src_, bytes_); }
  std::string Complete(napi_env e) override {
    Napi::Env env(e);
    Napi::ArrayBuffer ab = host_.Value();
    switch (type_) {
      case napi_float32_array: out_ = Napi::Float32Array::New(env, bytes_ / 4, ab, 0); break;
      case napi_uint16_array: out_ = Napi::Uint16Array::New(env, bytes_ / 2, ab, 0); break;
      default: out_ = Napi::Uint8Array::New(env, bytes_, ab, 0); break;
    }
    return std::string();
  }
  napi_value Result(napi_env) override { return out_; }  // made in Complete, inside the same handle scope

 private:
  napi_typedarray_type type_;
  const void* src_;
  size_t bytes_;
  HostBlockRef block_;
  std::unique_ptr<uint8_t[]> snapshot_;
  void* dst_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> host_;
  napi_value out_ = nullptr;
};

}  // namespace

Napi::Value CloneHostAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    if (!info[0].IsTypedArray()) ThrowTypeError(env, "cloneHostAsync: src must be a typed array, got " + DescribeValue(info[0]));
    Napi::TypedArray a = info[0].As<Napi::TypedArray>();
    TypedSpan s = GetTypedSpan(env, a);
    if (s.detached) ThrowError(env, "cloneHostAsync: src is detached");
    const napi_typedarray_type type = a.TypedArrayType();
    if ((type == napi_float32_array && s.bytes % 4) || (type == napi_uint16_array && s.bytes % 2)) {
      ThrowRangeError(env, "cloneHostAsync: src byteLength is not a multiple of its element size");
    }
    // No `into` (filling a caller's ordinary ArrayBuffer on a worker): Node-API cannot keep JS code from
    // transferring or shrinking (resizable) that buffer while the worker writes it, and either one makes
    // the worker write freed or decommitted memory. Reused outputs are addon memory instead
    // (MonarchOptions.hostOutputs 'pooled', lib/outputs.ts), which no JS code can free.
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      ThrowTypeError(env, "cloneHostAsync: takes one argument (src); a destination buffer is not supported (a worker cannot "
                          "fill an ordinary ArrayBuffer safely: JS could transfer or resize it meanwhile), received " +
                          DescribeValue(info[1]));
    }
    HostBlockRef block = s.shared ? HostBlockRef() : FindHostBlock(s.data, s.bytes);
    std::unique_ptr<uint8_t[]> snapshot;
    const void* src = s.data;
    if (!block && s.bytes) {  // not addon memory: snapshot it here, on the calling thread
      snapshot.reset(new uint8_t[s.bytes]);
      ParallelCopy(snapshot.get(), s.data, s.bytes);
      src = snapshot.get();
    }
    auto* w = new CloneWorker(env, type, src, s.bytes, std::move(block), std::move(snapshot));
    Napi::Promise promise = w->Promise();
    if (!w->TryQueue()) w->DropUnqueued("cloneHostAsync: could not be queued (the environment is shutting down)");
    return promise;
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

}  // namespace binding
}  // namespace monarch
