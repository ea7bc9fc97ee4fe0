// binding_safe_worker.cc — see binding_safe_worker.h.
#include "binding_safe_worker.h"

#include <exception>

namespace monarch {
namespace binding {

namespace {
// A JS Error with `message`, or nullptr when the environment cannot make one.
napi_value MakeError(napi_env env, const std::string& message) {
  napi_value text = nullptr, err = nullptr;
  if (napi_create_string_utf8(env, message.data(), message.size(), &text) != napi_ok) return nullptr;
  if (napi_create_error(env, nullptr, text, &err) != napi_ok) return nullptr;
  return err;
}
}  // namespace

SafeWorker::SafeWorker(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name) {
  napi_value promise = nullptr;
  if (napi_create_promise(env, &deferred_, &promise) != napi_ok) ThrowError(env, std::string(name) + ": cannot create a Promise");
  // Keep the Promise object reachable for Promise(); the deferred settles it.
  if (napi_create_reference(env, promise, 1, &promise_) != napi_ok) ThrowError(env, std::string(name) + ": cannot reference a Promise");
  SuppressDestruct();  // OnWorkComplete deletes this itself, after Finish
}

SafeWorker::~SafeWorker() {
  if (promise_) napi_delete_reference(Env(), promise_);
}

Napi::Promise SafeWorker::Promise() const {
  napi_value p = nullptr;
  napi_get_reference_value(Env(), promise_, &p);
  return Napi::Promise(Env(), p);
}

bool SafeWorker::TryQueue() { return napi_queue_async_work(Env(), *this) == napi_ok; }

void SafeWorker::Execute() {
  try {
    Run();
  } catch (const std::exception& e) {
    Fail(e.what());
  } catch (...) {
    Fail("unknown C++ exception");
  }
}

std::string SafeWorker::Complete(napi_env) { return std::string(); }
napi_value SafeWorker::Result(napi_env) { return nullptr; }
void SafeWorker::Finish(bool) {}

bool SafeWorker::Settle(napi_env env, bool ok, const std::string& error) {
  if (!deferred_) return false;
  napi_value v = nullptr;
  if (ok) {
    v = Result(env);
    if (!v && napi_get_undefined(env, &v) != napi_ok) return false;
  } else {
    v = MakeError(env, error);
    if (!v) return false;
  }
  napi_status s = ok ? napi_resolve_deferred(env, deferred_, v) : napi_reject_deferred(env, deferred_, v);
  if (s != napi_ok) {
    // A failed call may leave a pending exception (e.g. termination); it must not reach a callback.
    napi_value ignored;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &ignored);
    return false;
  }
  deferred_ = nullptr;  // consumed
  return true;
}

void SafeWorker::OnWorkComplete(Napi::Env env, napi_status status) {
  napi_handle_scope scope = nullptr;
  const bool haveScope = napi_open_handle_scope(env, &scope) == napi_ok;
  bool settled = false;
  if (status != napi_cancelled) {
    try {
      if (error_.empty()) {
        try {
          error_ = Complete(env);
        } catch (const std::exception& e) {
          error_ = e.what();
        } catch (...) {
          error_ = "the async call could not be completed";
        }
      }
      settled = Settle(env, error_.empty(), error_);
    } catch (...) {
      settled = false;
    }
  }
  try {
    Finish(!settled);
  } catch (...) {
  }
  if (haveScope) napi_close_handle_scope(env, scope);
  delete this;
}

void SafeWorker::DropUnqueued(const std::string& message) {
  try {
    Settle(Env(), false, message);
  } catch (...) {
  }
  delete this;
}

}  // namespace binding
}  // namespace monarch
