#!/usr/bin/env bash
# On the GPU machine (after `source .device/activate.sh`): the GPU test suite, compute-sanitizer on a
# small subset, the CLI check and the benchmarks. Logs and results go to $OUT (or ./device-out).
#   scripts/device-suite.sh [tests] [sanitize] [sanitize-jest] [check] [bench] [plot] [accuracy] [probes] [stream]
#   (default: tests sanitize check bench)
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
      jest --ci --runInBand 2>&1 | tee "$out/jest.log" | tail -40 ;;
    sanitize)
      echo "== compute-sanitizer memcheck + racecheck (node running the CLI's CUDA check: every stage, small shapes)"
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 99 --target-processes all \
          node bin/monarch-attn.js check --backend cuda --dtype bfloat16 > "$out/sanitize-$tool.log" 2>&1
        echo "$tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool.log" | tail -1)"
      done ;;
    sanitize-jest)
      echo "== compute-sanitizer memcheck + racecheck over the CUDA jest suites (\${SANITIZE_TESTS:-test/cuda-})"
      # API errors are not reported: test/cuda-errors-recovery.test.ts provokes cudaMalloc out-of-memory on
      # purpose; every kernel memory access is still checked.
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 99 --target-processes all \
          jest --ci --runInBand ${SANITIZE_TESTS:-test/cuda-} > "$out/sanitize-jest-$tool.log" 2>&1
        echo "$tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-jest-$tool.log" | tail -1); $(grep -E '^Tests:' "$out/sanitize-jest-$tool.log" | tail -1)"
      done ;;
    check)
      echo "== CLI check (cuda)"
      node bin/monarch-attn.js info | tee "$out/info.txt"
      for dt in float16 bfloat16 float32; do
        node bin/monarch-attn.js check --backend cuda --dtype $dt 2>&1 | tee "$out/check-$dt.txt" | tail -3
      done ;;
    bench)
      echo "== bench"
      for p in ${BENCH_PRESETS:-wan-480p wan-720p self-forcing-chunk wan-480p-causal wan-480p-cross seq-4k seq-16k}; do
        node bin/monarch-attn.js bench --backend cuda --preset $p --check --json "$out/bench-$p.json" \
          --markdown "$out/bench-$p.md" --no-progress 2>&1 | tee "$out/bench-$p.txt" | grep -E "│|check|FAIL|Error"
      done ;;
    plot)
      node bin/monarch-attn.js bench --backend cuda --preset wan-480p --iters 1 --plot "$out/frames.svg" \
        --plot-frames ${PLOT_FRAMES:-1-41:2} --json "$out/frames.json" --no-progress 2>&1 | tail -8 ;;
    accuracy)
      node bin/monarch-attn.js accuracy --backend cuda --dtype bfloat16 --tilings --floors --time-preset wan-480p \
        --pareto "$out/pareto.svg" --json "$out/accuracy.json" --markdown "$out/accuracy.md" --no-progress 2>&1 | tail -40 ;;
    probes)
      echo "== serving: event-loop delay with concurrent host/device-tensor forwards (benchmarks/loop_delay_probe.js)"
      if [ -f benchmarks/loop_delay_probe.js ]; then
        timeout 300 node benchmarks/loop_delay_probe.js --preset wan-480p --instances ${PROBE_INSTANCES:-1,4} --seconds ${PROBE_SECONDS:-2} \
          --out "$out" > "$out/loop-delay.log" 2> "$out/loop-delay.err"; echo "probe exit $?"; tail -c 1500 "$out/loop_delay.json"
      fi ;;
    stream)
      echo "== streaming: the example server at 480p (profile, 1 and 8 sessions, long run; examples/streaming-server/gpu-run.sh)"
      bash examples/streaming-server/gpu-run.sh "$out/stream"; echo "stream exit $?" ;;
  esac
done
