#!/usr/bin/env bash
# Developer build of build/Release/monarch.node with plain cmake (headers from node_modules), serialised
# with a lock so that parallel sessions never run two builds in one build/ at once.
#   scripts/dev-build.sh            CPU-only (fast)
#   scripts/dev-build.sh cuda       with CUDA kernels for sm_90a only
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-cpu}
exec 9>/tmp/monarch-dev-build.lock
flock 9
if [ "$mode" = cuda ]; then
  cmake -S . -B build -G Ninja -DMONARCH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real >/dev/null
else
  cmake -S . -B build -G Ninja -DMONARCH_CUDA=OFF >/dev/null
fi
cmake --build build
