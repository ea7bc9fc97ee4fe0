// binding_workers.cc — PlanWorker and SerialQueue (see binding_workers.h).
#include "binding_workers.h"

#include <utility>

namespace monarch {
namespace binding {

PlanWorker::PlanWorker(Napi::Env env, const char* name, SerialQueue* queue, std::function<Status()> job,
                       std::vector<Napi::ObjectReference> keep, HostHolds holds)
    : Napi::AsyncWorker(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      queue_(queue),
      job_(std::move(job)),
      keep_(std::move(keep)),
      holds_(std::move(holds)) {}

void PlanWorker::Execute() {
  Status s = job_();
  if (!s.ok) SetError(s.message.empty() ? std::string("backend call failed") : s.message);
}

void PlanWorker::OnOK() {
  std::string err = holds_.CopyBack(Env());
  if (err.empty()) {
    deferred_.Resolve(Env().Undefined());
  } else {
    deferred_.Reject(Napi::Error::New(Env(), err).Value());
  }
  queue_->Done();
}

void PlanWorker::OnError(const Napi::Error& e) {
  deferred_.Reject(e.Value());
  queue_->Done();
}

void PlanWorker::RejectUnstarted(const std::string& message) {
  deferred_.Reject(Napi::Error::New(Env(), message).Value());
  delete this;  // never queued, so node-addon-api will not delete it
}

SerialQueue::~SerialQueue() {
  // Only reached at environment teardown with workers still waiting (a running worker references the
  // plan, so the plan cannot be finalized under it); they were never queued, so delete them here.
  for (PlanWorker* w : pending_) delete w;
}

void SerialQueue::Push(PlanWorker* w) {
  if (!running_) {
    running_ = true;
    w->Queue();
  } else {
    pending_.push_back(w);
  }
}

void SerialQueue::Done() {
  running_ = false;
  if (!pending_.empty()) {
    PlanWorker* next = pending_.front();
    pending_.pop_front();
    running_ = true;
    next->Queue();
    return;
  }
  if (onIdle) onIdle();
}

void SerialQueue::RejectPending(const std::string& message) {
  std::deque<PlanWorker*> waiting;
  waiting.swap(pending_);
  for (PlanWorker* w : waiting) w->RejectUnstarted(message);
}

}  // namespace binding
}  // namespace monarch
