// cpu_gather.cc — monarch::cpu::gather_tokens: dst token t = src token map[t] (t < nDst), zeros
// where map[t] < 0. Used for padding (§A.4) and tile orders that differ from the input order
// (§B.2). A bit copy (src and dst share the dtype), so gather/scatter round trips are exact.
// The caller guarantees map[t] < the source length (GatherParams does not carry it).
#include <cstring>

#include "common.h"
#include "threads.h"

namespace monarch {
namespace cpu {

using namespace detail;

Status gather_tokens(const GatherParams& p) {
  const char* stage = "gather_tokens";
  if (!valid_dtype(p.dtype))
    return Status::Error("gather_tokens: unsupported dtype code " + std::to_string(int(p.dtype)) + ".");
  std::string e = dims_error(stage, p.B, p.H, p.D);
  if (!e.empty()) return Status::Error(e);
  if (p.nDst < 0) return Status::Error("gather_tokens: nDst must be >= 0, got " + std::to_string(p.nDst) + ".");
  if (p.nDst == 0) return Status::Ok();
  if (!p.map) return Status::Error(null_error(stage, "map"));
  if (!p.dst.data) return Status::Error(null_error(stage, "dst.data"));
  if (!p.src.data) return Status::Error(null_error(stage, "src.data"));

  const size_t es = dtype_size(p.dtype), rowBytes = size_t(p.D) * es;
  const int64_t items = int64_t(p.B) * p.nDst;  // one item per (b, dst token): H rows of D
  return parallel_for(stage, items, [&](int64_t begin, int64_t end) {
    for (int64_t it = begin; it < end; ++it) {
      const int64_t b = it / p.nDst, t = it % p.nDst;
      const int64_t srcTok = p.map[t];
      for (int64_t h = 0; h < p.H; ++h) {
        char* d = static_cast<char*>(p.dst.data) + act_off(p.dst, b, t, h) * int64_t(es);
        if (srcTok < 0) {
          std::memset(d, 0, rowBytes);
        } else {
          const char* s = static_cast<const char*>(p.src.data) + act_off(p.src, b, srcTok, h) * int64_t(es);
          std::memmove(d, s, rowBytes);
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace monarch
