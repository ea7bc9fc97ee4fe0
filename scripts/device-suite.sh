#!/usr/bin/env bash
# On the GPU machine (after `source .device/activate.sh`): the GPU test suite, compute-sanitizer on a
# small subset, the CLI check and the benchmarks. Logs and results go to $OUT (or ./device-out).
#   scripts/device-suite.sh [tests] [sanitize] [check] [bench] [accuracy]   (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}; mkdir -p "$out"
steps=${*:-tests sanitize check bench}
export MONARCH_TEST_CUDA=1 MONARCH_COMMIT=${MONARCH_COMMIT:-$(cat .device/commit 2>/dev/null || echo unknown)}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -2; } > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
for s in $steps; do
  case $s in
    tests)
      echo "== GPU jest suite"
      npx jest --ci --runInBand 2>&1 | tee "$out/jest.log" | tail -40 ;;
    sanitize)
      echo "== compute-sanitizer memcheck + racecheck (node on the CUDA smoke tests)"
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 99 --target-processes all \
          node dist/lib/cli/main.js check --backend cuda --small > "$out/sanitize-$tool.log" 2>&1
        echo "$tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool.log" | tail -1)"
      done ;;
    check)
      echo "== CLI check (cuda)"
      node bin/monarch-attn.js info | tee "$out/info.txt"
      node bin/monarch-attn.js check --backend cuda 2>&1 | tee "$out/check.txt" | tail -30 ;;
    bench)
      echo "== bench"
      node bin/monarch-attn.js bench --backend cuda --preset wan-480p,wan-720p,self-forcing-chunk,seq-4k,seq-16k \
        --check --json "$out/bench.json" --markdown "$out/bench.md" --no-progress 2>&1 | tee "$out/bench.txt" | tail -60 ;;
    plot)
      node bin/monarch-attn.js bench --backend cuda --frames-sweep --plot "$out/frames.svg" --json "$out/frames.json" --no-progress 2>&1 | tail -30 ;;
    accuracy)
      node bin/monarch-attn.js accuracy --backend cuda --json "$out/accuracy.json" --markdown "$out/accuracy.md" 2>&1 | tail -40 ;;
  esac
done
