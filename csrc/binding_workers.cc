// binding_workers.cc — PlanWorker and SerialQueue (see binding_workers.h).
#include "binding_workers.h"

#include <utility>

namespace monarch {
namespace binding {

PlanWorker::PlanWorker(Napi::Env env, const char* name, SerialQueue* queue, std::function<Status()> job,
                       std::vector<Napi::ObjectReference> keep, HostHolds holds)
    : SafeWorker(env, name), queue_(queue), job_(std::move(job)), keep_(std::move(keep)), holds_(std::move(holds)) {}

void PlanWorker::Run() {
  Status s = job_();
  if (!s.ok) Fail(s.message.empty() ? std::string("backend call failed") : s.message);
}

std::string PlanWorker::Complete(napi_env env) {
  // Written spans that went through a copy return to the caller's arrays before the Promise resolves.
  return holds_.CopyBack(Napi::Env(env));
}

void PlanWorker::Finish(bool closing) {
  SerialQueue* q = queue_;
  queue_ = nullptr;
  if (q) q->Done(closing);
}

SerialQueue::~SerialQueue() {
  // Only reached at environment teardown with workers still waiting (a running worker references the
  // plan, so the plan cannot be finalized under it); they were never queued, so delete them here.
  std::deque<PlanWorker*> waiting;
  waiting.swap(pending_);
  for (PlanWorker* w : waiting) delete w;
}

void SerialQueue::Push(PlanWorker* w) {
  pending_.push_back(w);
  if (!running_) StartNext();
}

void SerialQueue::StartNext() {
  while (!pending_.empty()) {
    PlanWorker* next = pending_.front();
    pending_.pop_front();
    running_ = true;
    if (next->TryQueue()) return;
    running_ = false;
    next->DropUnqueued("the async call could not be queued (the environment is shutting down)");
  }
}

void SerialQueue::Done(bool closing) {
  running_ = false;
  if (closing) {
    std::deque<PlanWorker*> waiting;
    waiting.swap(pending_);
    for (PlanWorker* w : waiting) delete w;  // never queued; their Promises can no longer be observed
  } else if (!pending_.empty()) {
    StartNext();
    if (running_) return;
  }
  if (onIdle) onIdle();
}

void SerialQueue::RejectPending(const std::string& message) {
  std::deque<PlanWorker*> waiting;
  waiting.swap(pending_);
  for (PlanWorker* w : waiting) w->DropUnqueued(message);
}

}  // namespace binding
}  // namespace monarch
