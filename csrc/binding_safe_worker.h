// binding_safe_worker.h — an AsyncWorker whose completion can never abort the process.
//
// node-addon-api's AsyncWorker settles its work inside OnOK/OnError with C++-exception-throwing calls.
// When the environment is being torn down (worker.terminate(), process exit) while the work runs, JS can
// no longer run: settling a Promise fails, node-addon-api throws a Napi::Error from inside its completion
// callback, and the throw ends in std::terminate (exit 134). SafeWorker replaces that completion path:
//   - the Promise is a raw napi_deferred settled with plain Node-API calls whose failures are ignored
//     (an environment that cannot run JS can no longer observe the Promise);
//   - Finish(closing) always runs, exactly once, so subclasses release their bookkeeping (queue slots,
//     in-flight counts) whether or not JS could be reached; `closing` says the environment is going away;
//   - nothing in the completion path throws.
#pragma once

#include <string>

#include "binding_common.h"

namespace monarch {
namespace binding {

class SafeWorker : public Napi::AsyncWorker {
 public:
  SafeWorker(Napi::Env env, const char* name);
  ~SafeWorker() override;
  Napi::Promise Promise() const;
  // Queues the work; false (nothing queued) when Node refuses it (environment closing).
  bool TryQueue();
  // Rejects the Promise of a worker that was never queued (with plain Node-API calls) and deletes it
  // (Finish is not called: it never ran).
  void DropUnqueued(const std::string& message);

 protected:
  // Worker thread: the work; must not touch JS. Report failure with Fail (exceptions are caught too).
  virtual void Run() = 0;
  void Fail(std::string message) { error_ = std::move(message); }
  // Main thread, after a successful Run, when JS can still run, before the Promise is settled: last
  // main-thread steps of the work (e.g. copying results back into caller memory). A non-empty message
  // rejects the Promise with it instead of resolving. Exceptions are caught (the Promise then rejects).
  virtual std::string Complete(napi_env env);
  // Main thread, after Execute, when JS can still run: the value to resolve with (default undefined).
  // Must not throw; return nullptr to resolve with undefined.
  virtual napi_value Result(napi_env env);
  // Main thread, always once, after the Promise was settled or could not be (closing = true).
  virtual void Finish(bool closing);

 private:
  void Execute() final;
  void OnWorkComplete(Napi::Env env, napi_status status) final;
  void OnOK() final {}
  void OnError(const Napi::Error&) final {}
  bool Settle(napi_env env, bool ok, const std::string& error);

  napi_deferred deferred_ = nullptr;
  napi_ref promise_ = nullptr;
  std::string error_;
};

}  // namespace binding
}  // namespace monarch
