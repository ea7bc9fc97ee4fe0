#!/bin/sh
# prebuildify runs "<node-gyp> rebuild --target=.. --devdir=.. --arch=.. --release|--debug" and then
# takes build/Release/*.node. Do the CUDA-capable cmake-js build instead.
set -e
cfg=Release
for a in "$@"; do [ "$a" = "--debug" ] && cfg=Debug; done
exec npx --no-install cmake-js rebuild --config "$cfg"
