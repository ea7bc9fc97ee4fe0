// binding_nccl_api.cc — dlopen of libnccl (see binding_nccl_api.h). Builds with or without CUDA.
#include "binding_nccl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace monarch {
namespace binding {
namespace nccl {
namespace {

std::mutex gMutex;
Api gApi;
bool gLoaded = false;
std::string gPath;
int gVersion = 0;

template <typename F>
bool Bind(void* h, const char* name, F* fn, std::string* missing) {
  void* sym = dlsym(h, name);
  if (!sym) {
    if (missing) *missing += (missing->empty() ? "" : ", ") + std::string(name);
    return false;
  }
  *fn = reinterpret_cast<F>(sym);
  return true;
}

}  // namespace

const Api* Load(const std::vector<std::string>& candidates, std::string* path, int* version, std::string* error) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (!gLoaded) {
    // Non-blocking communicators (NCCL ≥ 2.14 reads this at communicator creation).
    setenv("NCCL_COMM_BLOCKING", "0", 1);
    std::string tried;
    for (const std::string& c : candidates) {
      dlerror();
      void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = dlerror();
        tried += "\n  " + c + ": " + (e ? e : "dlopen failed");
        continue;
      }
      Api api;
      std::string missing;
      bool ok = Bind(h, "ncclGetVersion", &api.getVersion, &missing);
      ok = Bind(h, "ncclGetUniqueId", &api.getUniqueId, &missing) && ok;
      ok = Bind(h, "ncclCommInitRank", &api.commInitRank, &missing) && ok;
      ok = Bind(h, "ncclGroupStart", &api.groupStart, &missing) && ok;
      ok = Bind(h, "ncclGroupEnd", &api.groupEnd, &missing) && ok;
      ok = Bind(h, "ncclSend", &api.send, &missing) && ok;
      ok = Bind(h, "ncclRecv", &api.recv, &missing) && ok;
      ok = Bind(h, "ncclCommGetAsyncError", &api.commGetAsyncError, &missing) && ok;
      ok = Bind(h, "ncclCommAbort", &api.commAbort, &missing) && ok;
      ok = Bind(h, "ncclCommDestroy", &api.commDestroy, &missing) && ok;
      ok = Bind(h, "ncclGetErrorString", &api.getErrorString, &missing) && ok;
      Bind(h, "ncclGetLastError", &api.getLastError, nullptr);
      int v = 0;
      if (ok && api.getVersion(&v) != kSuccess) ok = false, missing = "ncclGetVersion failed";
      // ncclSend/ncclRecv appeared in 2.7; non-blocking communicators (NCCL_COMM_BLOCKING) in 2.14.
      if (ok && v < 21400) {
        tried += "\n  " + c + ": NCCL " + std::to_string(v) + " is older than 2.14 (non-blocking communicators)";
        dlclose(h);
        continue;
      }
      if (!ok) {
        tried += "\n  " + c + ": not a usable NCCL (missing " + missing + ")";
        dlclose(h);
        continue;
      }
      gApi = api;  // the handle stays open for the life of the process
      gLoaded = true;
      gPath = c;
      gVersion = v;
      break;
    }
    if (!gLoaded) {
      *error = candidates.empty() ? std::string("no candidate library") : "tried:" + tried;
      return nullptr;
    }
  }
  *path = gPath;
  *version = gVersion;
  return &gApi;
}

const Api* Loaded() {
  std::lock_guard<std::mutex> lock(gMutex);
  return gLoaded ? &gApi : nullptr;
}

std::string Describe(const Api& api, int result) {
  static const char* const kNames[] = {"ncclSuccess", "ncclUnhandledCudaError", "ncclSystemError", "ncclInternalError",
                                       "ncclInvalidArgument", "ncclInvalidUsage", "ncclRemoteError", "ncclInProgress"};
  std::string s = (result >= 0 && result <= 7 ? kNames[result] : "ncclResult") + std::string(" (") + std::to_string(result) + ")";
  const char* text = api.getErrorString ? api.getErrorString(result) : nullptr;
  if (text && *text) s += ": " + std::string(text);
  const char* last = api.getLastError ? api.getLastError(nullptr) : nullptr;
  if (last && *last) s += " — " + std::string(last);
  return s;
}

}  // namespace nccl
}  // namespace binding
}  // namespace monarch
