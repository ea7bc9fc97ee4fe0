// threads.h — the CPU backend's parallel-for. Threads are spawned per call (no shared pool), so
// concurrent calls from several host threads (Node's libuv workers) are independent; ThreadsScope
// (monarch.h) sets a call's thread count.
#pragma once

#include <cstdint>
#include <functional>

#include <monarch/monarch.h>

namespace monarch {
namespace cpu {

// Runs body(begin, end) over disjoint chunks covering [0, n), on up to num_threads() threads
// (the calling thread included). Chunks are handed out dynamically, so uneven items (causal
// pairs that are skipped) balance. An exception escaping body (e.g. std::bad_alloc for scratch)
// is caught and returned as an error naming `stage`; the remaining chunks are abandoned.
Status parallel_for(const char* stage, int64_t n,
                    const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace cpu
}  // namespace monarch
