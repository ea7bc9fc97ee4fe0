#!/usr/bin/env bash
# On the GPU machine: the Node-less CUDA-vs-CPU checker (test/native/cuda_check.cc), then
# compute-sanitizer memcheck and racecheck on its small-shape mode. Logs go to $OUT (or ./device-out).
#   scripts/device-cuda-check.sh [checker args, e.g. --seed 7 or --no-time]
# Uses build-dev/monarch_cuda_check when it was carried (build it here first:
#   cmake -S . -B build-dev -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a-real -DMONARCH_NATIVE_TESTS=ON
#   cmake --build build-dev --target monarch_cuda_check), else builds that target on the GPU machine
# (it needs no Node headers). REBUILD=1 forces the build. BIN=path checks another build of the checker
# (a variant); TAG=-x suffixes the log names; BRIEF=1 prints only failures, timings and the verdict.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}; mkdir -p "$out"
bin=${BIN:-build-dev/monarch_cuda_check}
tag=${TAG:-}
if [ ! -x "$bin" ] || [ "${REBUILD:-0}" = 1 ]; then
  echo "== building monarch_cuda_check (sm_90a)"
  { cmake -S . -B build-dev -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a-real -DMONARCH_NATIVE_TESTS=ON &&
    cmake --build build-dev --target monarch_cuda_check -j "$(nproc)"; } > "$out/build.log" 2>&1 ||
    { tail -40 "$out/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

echo "== checker"
"$bin" "$@" > "$out/check$tag.log" 2>&1
rc=$?
grep -E "FAIL|FATAL" "$out/check$tag.log" | head -30

echo "== compute-sanitizer (small mode)"
for tool in memcheck racecheck; do
  timeout 300 compute-sanitizer --tool $tool --error-exitcode 99 "$bin" --small > "$out/sanitize-$tool$tag.log" 2>&1
  echo "$tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool$tag.log" | tail -1) / $(tail -1 "$out/sanitize-$tool$tag.log")"
  grep -m3 -A4 -E "^========= (Invalid|Error|Race|Program hit)" "$out/sanitize-$tool$tag.log" | grep -v "Host Frame" | head -12
done

echo "== checker table (full log: check$tag.log)"
sed -n '/^device:/p' "$out/check$tag.log"
if [ "${BRIEF:-0}" = 1 ]; then
  sed -n '/^case /,$p' "$out/check$tag.log" | awk '/^timing/{t=1} t || /FAIL|bit-identical/' 
else
  sed -n '/^case /,$p' "$out/check$tag.log"
fi
echo "checker exit $rc"
exit $rc
