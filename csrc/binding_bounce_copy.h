// binding_bounce_copy.h — device-to-host copies into pageable memory through page-locked bounce
// buffers (DeviceBuffer.download / downloadSync). cudaMemcpy into pageable memory (a fresh ArrayBuffer)
// reached 1.3 GB/s on the H200 host and ran as one long driver call; here the copy engine fills one
// 8 MiB page-locked slot on a non-blocking stream of the calling thread's device while the CPU copies
// the other slot out (ParallelCopy). Slots come in pairs (16 MiB page-locked) from a process-wide free
// list, allocated on first use; up to four pairs per device stay allocated for later downloads (64 MiB),
// the pairs of more concurrent downloads are freed after them.
#pragma once

#include <cstddef>

#include <monarch/monarch.h>

namespace monarch {
namespace binding {

#ifdef MONARCH_WITH_CUDA
// Copies `bytes` from device memory `src` (the current device) into pageable host memory `dst`; returns
// when the bytes are in `dst`. Orders nothing: the caller synchronises what must run before. Falls back
// to one cudaMemcpy when no bounce slot can be had (page-locked allocation refused).
Status CopyDeviceToPageable(void* dst, const void* src, size_t bytes);
#endif

}  // namespace binding
}  // namespace monarch
