#!/bin/sh
# prebuildify runs "<node-gyp> rebuild --target=.. --devdir=.. --arch=.. --release|--debug" and then
# takes build/Release/*.node. Do the CUDA-capable cmake-js build instead (scripts/prebuild.sh sets
# MONARCH_CUDA_ARCHS to override the architecture list of CMakeLists.txt).
set -e
cfg=Release
for a in "$@"; do [ "$a" = "--debug" ] && cfg=Debug; done
if [ -n "${MONARCH_CUDA_ARCHS:-}" ]; then
  exec npx --no-install cmake-js rebuild --config "$cfg" --CDMONARCH_CUDA=ON "--CDCMAKE_CUDA_ARCHITECTURES=$MONARCH_CUDA_ARCHS"
fi
exec npx --no-install cmake-js rebuild --config "$cfg" --CDMONARCH_CUDA=ON
