// threads.cc — set_num_threads / num_threads, ThreadsScope and the per-call std::thread parallel-for.
#include "threads.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace monarch {
namespace cpu {

namespace {
std::atomic<int> g_threads{0};  // 0 = hardware concurrency
thread_local int t_threads = 0;  // > 0: the ThreadsScope of the call running on this thread
}

void set_num_threads(int n) { g_threads.store(n < 0 ? 0 : n); }

ThreadsScope::ThreadsScope(int n) : saved_(t_threads) {
  if (n > 0) t_threads = n;
}
ThreadsScope::~ThreadsScope() { t_threads = saved_; }

int num_threads() {
  if (t_threads > 0) return t_threads;
  const int n = g_threads.load();
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? int(hw) : 1;
}

Status parallel_for(const char* stage, int64_t n,
                    const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return Status::Ok();
  const int64_t nt = std::min<int64_t>(num_threads(), n);
  // ~8 chunks per thread: enough to balance skipped / uneven items, few enough to amortise scratch.
  const int64_t chunk = std::max<int64_t>(1, n / (nt * 8));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex err_mu;
  std::string err;

  auto worker = [&]() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const int64_t b = next.fetch_add(chunk);
      if (b >= n) return;
      try {
        body(b, std::min(n, b + chunk));
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(err_mu);
        if (!failed.exchange(true)) err = e.what();
        return;
      } catch (...) {
        std::lock_guard<std::mutex> g(err_mu);
        if (!failed.exchange(true)) err = "unknown exception";
        return;
      }
    }
  };

  std::vector<std::thread> pool;
  try {
    pool.reserve(size_t(nt - 1));
    for (int64_t t = 1; t < nt; ++t) pool.emplace_back(worker);
  } catch (...) {
    // Could not start (all) threads: the threads that did start and this one finish the work.
  }
  worker();
  for (auto& t : pool) t.join();
  if (failed.load()) return Status::Error(std::string(stage) + ": CPU worker failed (" + err + ").");
  return Status::Ok();
}

}  // namespace cpu
}  // namespace monarch
