// binding_common.h — what every binding_*.cc shares: the one napi.h include (with C++ exceptions,
// unthrowable exceptions at teardown swallowed, and
// std::exception / unknown exceptions turned into JS Errors too, so that e.g. a std::bad_alloc never
// escapes into Node), the JS error helpers and the readers of plain option values.
//
// Error kinds (STYLE.md habit 5): TypeError = wrong kind of value (not a number, not a Float32Array,
// a host array given to a CUDA plan); RangeError = right kind, bad value (not an integer, out of range,
// a buffer too small); Error = a state or backend failure ("Plan was disposed", CUDA errors).
#pragma once

#ifndef NODE_ADDON_API_CPP_EXCEPTIONS_ALL
#define NODE_ADDON_API_CPP_EXCEPTIONS_ALL
#endif
// A method called while its environment is torn down (worker.terminate()) cannot throw into JS: the
// rethrow of a Napi::Error would itself fail and end in std::terminate. With this, node-addon-api drops
// such an unthrowable exception instead (nothing can observe it any more).
#ifndef NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#endif
#include <napi.h>

#include <cstdint>
#include <string>

#include <monarch/monarch.h>

namespace monarch {
namespace binding {

[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowError(Napi::Env env, const std::string& message);
// Throws an Error carrying the backend's message when !s.ok.
void ThrowIfFailed(Napi::Env env, const Status& s);

// "a string", "undefined", "a Float32Array", "an object" ... for messages.
std::string DescribeValue(const Napi::Value& v);
std::string NumberText(double d);  // 3, 1.5, NaN, Infinity

// Readers of one property of an options/args object; `where` names it in messages, e.g. "rStep: Aq".
// Integers must be finite whole numbers in [lo, hi].
int64_t ReadInt(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where,
                int64_t lo, int64_t hi);
int64_t ToInt(Napi::Env env, const Napi::Value& v, const std::string& where, int64_t lo, int64_t hi);
double ReadFiniteNumber(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where);
bool ToBool(Napi::Env env, const Napi::Value& v, const std::string& where);
// A CUDA handle (cudaStream_t / cudaEvent_t) passed from JS as a bigint: TypeError when v is not a
// bigint, RangeError when it is 0n, negative or wider than 64 bits. Nothing can check that the address
// really is a live stream / event; lib/ documents the caller's contract.
void* ToHandle(Napi::Env env, const Napi::Value& v, const std::string& where);
// The args object itself (first parameter of a method).
Napi::Object ToObject(Napi::Env env, const Napi::Value& v, const std::string& where);

// Overflow-checked int64 arithmetic for sizes/extents computed from user-supplied numbers; false on
// overflow.
inline bool MulOk(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool AddOk(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

constexpr int64_t kMaxInt32 = 2147483647;
constexpr int64_t kMaxSafeInteger = 9007199254740991;  // Number.MAX_SAFE_INTEGER

// Per-environment state (napi_set_instance_data): the constructors, for instanceof checks and for
// creating DeviceBuffers from C++.
struct AddonData {
  Napi::FunctionReference deviceBufferCtor;
  Napi::FunctionReference planCtor;
};
AddonData& GetAddonData(Napi::Env env);

// Why the CUDA backend cannot be used in this process, or "" when it can (compiled in, the runtime
// initialises and at least one device is visible). Probed once per process.
const std::string& CudaUnavailableReason();
// CUDA devices visible to this process (0 when CUDA is unavailable). Probed once per process, like the above.
int VisibleDeviceCount();

}  // namespace binding
}  // namespace monarch
