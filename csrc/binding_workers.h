// binding_workers.h — the AsyncWorkers of a Plan and the queue that runs them one after another.
//
// A CPU plan's async calls each become a PlanWorker (libuv pool, Promise). They share the plan's
// workspace, so they must not overlap and must run in call order (an un-awaited rStepAsync followed by
// lStepAsync behaves like two launches on one CUDA stream): the SerialQueue starts a worker only when
// the previous one has completed. Each worker holds Napi::References to the plan object and to every
// typed array its params point into, so none of them can be collected while it runs.
// A CUDA plan uses the same queue only for synchronizeAsync (the job is a stream_sync).
// Completion goes through SafeWorker, so a worker finishing while its environment is torn down
// (worker.terminate(), process exit) neither throws nor starts the workers still waiting: they are
// dropped and the queue goes idle, letting the plan free its resources.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "binding_common.h"
#include "binding_host_memory.h"
#include "binding_safe_worker.h"

namespace monarch {
namespace binding {

class SerialQueue;

class PlanWorker : public SafeWorker {
 public:
  // `job` runs on a libuv thread and must not touch JS; `keep` holds every object it reads or writes.
  // `holds` keeps its host spans valid (binding_host_memory.h); written copies go back before the
  // Promise resolves.
  PlanWorker(Napi::Env env, const char* name, SerialQueue* queue, std::function<Status()> job,
             std::vector<Napi::ObjectReference> keep, HostHolds holds = HostHolds());

 protected:
  void Run() override;
  std::string Complete(napi_env env) override;
  void Finish(bool closing) override;

 private:
  SerialQueue* queue_;
  std::function<Status()> job_;
  std::vector<Napi::ObjectReference> keep_;
  HostHolds holds_;
};

class SerialQueue {
 public:
  ~SerialQueue();
  // Starts w now when idle, else after every worker pushed before it.
  void Push(PlanWorker* w);
  // True while a worker runs or waits.
  bool busy() const { return running_ || !pending_.empty(); }
  // Rejects every worker that has not started (the running one finishes normally).
  void RejectPending(const std::string& message);
  // Called when the queue becomes idle after a worker completes (main thread).
  std::function<void()> onIdle;

 private:
  friend class PlanWorker;
  // The running worker has completed (main thread). `closing`: the environment is going away, so the
  // waiting workers are dropped instead of started.
  void Done(bool closing);
  void StartNext();

  bool running_ = false;
  std::deque<PlanWorker*> pending_;
};

}  // namespace binding
}  // namespace monarch
