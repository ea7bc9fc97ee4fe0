// binding_nccl_api.h — NCCL loaded at run time (dlopen), no build-time dependency: the few entry points
// the sequence-parallel communicator uses, declared here from their documented C signatures (NCCL user
// guide, "NCCL API"). No NCCL header is included; the types below are ABI-equivalent stand-ins:
//   ncclResult_t / ncclDataType_t  → int (C enums)
//   ncclComm_t                     → void* (a pointer to an opaque struct)
//   ncclUniqueId                   → struct of NCCL_UNIQUE_ID_BYTES = 128 chars, passed by value
//   cudaStream_t                   → void*
// No napi.h here: binding_nccl.cc wraps this for JS.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace monarch {
namespace binding {
namespace nccl {

// ncclResult_t values (NCCL "Types"): 0 success … 6 remote error, 7 in progress (non-blocking comms).
constexpr int kSuccess = 0;
constexpr int kRemoteError = 6;
constexpr int kInProgress = 7;
// ncclDataType_t: ncclInt8 (= ncclChar) is the first enumerator, 0; we move bytes.
constexpr int kInt8 = 0;
constexpr size_t kUniqueIdBytes = 128;

struct UniqueId {
  char internal[kUniqueIdBytes];
};
using Comm = void*;
using Stream = void*;

struct Api {
  int (*getVersion)(int* version) = nullptr;
  int (*getUniqueId)(UniqueId* uniqueId) = nullptr;
  int (*commInitRank)(Comm* comm, int nranks, UniqueId commId, int rank) = nullptr;
  int (*groupStart)() = nullptr;
  int (*groupEnd)() = nullptr;
  int (*send)(const void* sendbuff, size_t count, int datatype, int peer, Comm comm, Stream stream) = nullptr;
  int (*recv)(void* recvbuff, size_t count, int datatype, int peer, Comm comm, Stream stream) = nullptr;
  int (*commGetAsyncError)(Comm comm, int* asyncError) = nullptr;
  int (*commAbort)(Comm comm) = nullptr;
  int (*commDestroy)(Comm comm) = nullptr;
  const char* (*getErrorString)(int result) = nullptr;
  const char* (*getLastError)(Comm comm) = nullptr;  // optional (NCCL ≥ 2.13)
};

// Loads the first candidate that dlopens and exports every required symbol (once per process; later
// calls return the loaded library whatever the candidates). Before loading it sets NCCL_COMM_BLOCKING=0
// so that every communicator is non-blocking: init and group calls return ncclInProgress instead of
// blocking on a dead peer, which is what lets the caller time out (ncclCommGetAsyncError polling).
// On failure returns nullptr and *error lists each candidate with its dlerror.
const Api* Load(const std::vector<std::string>& candidates, std::string* path, int* version, std::string* error);

// The loaded API, or nullptr before a successful Load.
const Api* Loaded();

// "ncclRemoteError (6): <ncclGetErrorString>" plus ncclGetLastError's detail when there is one.
std::string Describe(const Api& api, int result);

}  // namespace nccl
}  // namespace binding
}  // namespace monarch
