#!/usr/bin/env bash
# On the build machine: build the addon with CUDA for the H100 (sm_90a) only, compile the TypeScript,
# and pack Node + node_modules for a GPU machine without Node (../shared/device/pack.sh).
# Then run scripts/device-suite.sh there with carry [".device", "build/Release", "dist"].
set -euo pipefail
cd "$(dirname "$0")/.."
# Plain cmake: unlike `cmake-js compile` on an existing build/, it always applies the -D flags.
cmake -S . -B build -G Ninja -DMONARCH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real >/dev/null
cmake --build build
npx --no-install tsc -p tsconfig.build.json
bash ../shared/device/pack.sh
# The commit the device run reports (a "-dirty" suffix when the tree has uncommitted changes).
echo "$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- . ':!benchmarks/results' || echo -dirty)" > .device/commit
du -sh .device build/Release dist
