// cpu_threads.h — the CPU backend's parallel-for and its per-call thread count. Threads are spawned per call (no shared pool),
// so concurrent calls from several host threads (Node's libuv workers) are independent.
#pragma once

#include <cstdint>
#include <functional>

#include "monarch.h"

namespace monarch {
namespace cpu {

// Thread count of the CPU backend's calls made on the current thread while this object lives
// (n > 0; n = 0 leaves the process-wide setting): a plan's `threads` applies to that plan's calls
// only, whichever host thread (event loop or libuv worker) runs them.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n);
  ~ThreadsScope();
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int saved_;
};

// Runs body(begin, end) over disjoint chunks covering [0, n), on up to num_threads() threads
// (the calling thread included). Chunks are handed out dynamically, so uneven items (causal
// pairs that are skipped) balance. An exception escaping body (e.g. std::bad_alloc for scratch)
// is caught and returned as an error naming `stage`; the remaining chunks are abandoned.
Status parallel_for(const char* stage, int64_t n,
                    const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace cpu
}  // namespace monarch
