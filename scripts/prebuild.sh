#!/usr/bin/env bash
# Builds the linux-x64 prebuild that `npm pack` ships: prebuilds/linux-x64/monarch-attention.node, the
# CUDA-capable cmake-js build (static cudart, so it loads without a driver and runs on the CPU backend
# there; libcuda is opened at run time) for the architecture list of CMakeLists.txt, stripped.
# Run by .github/workflows/release.yml in a CUDA container; needs nvcc (CUDACXX), cmake, g++.
#   scripts/prebuild.sh                       all architectures (release)
#   MONARCH_CUDA_ARCHS=90a-real scripts/prebuild.sh   one architecture (quick check)
#   MONARCH_PREBUILD_CPU=1 scripts/prebuild.sh         CPU-only (no nvcc; for testing the packaging)
# Then checks the result: it loads, reports the expected CUDA build, and links no CUDA shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
want_cuda=1
if [ "${MONARCH_PREBUILD_CPU:-0}" = 1 ]; then
  want_cuda=0
elif [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1; then
  echo "prebuild: no CUDA compiler (nvcc or CUDACXX); set MONARCH_PREBUILD_CPU=1 for a CPU-only prebuild" >&2
  exit 1
fi
rm -rf prebuilds/linux-x64
if [ $want_cuda = 1 ]; then
  npx --no-install prebuildify --napi --strip --node-gyp ./scripts/cmake-js-as-node-gyp.sh
else
  npx --no-install cmake-js rebuild --CDMONARCH_CUDA=OFF
  mkdir -p prebuilds/linux-x64
  cp build/Release/monarch.node prebuilds/linux-x64/monarch-attention.node
  strip --strip-unneeded prebuilds/linux-x64/monarch-attention.node
fi
node scripts/check-prebuild.js "$want_cuda"
