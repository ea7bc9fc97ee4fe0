#!/usr/bin/env bash
# On the GPU machine (after `source .device/activate.sh`, with build-dev/monarch_cuda_check carried or
# built): the first hardware run of the preview kernels (benchmarks/notes/kernel-preview.md) —
# checker with and without the previews, few-CTA runs that reuse every ring slot, the sanitizers, the
# stage timings side by side, the GPU jest suites with the previews on, and the 480p bench A/B.
# Every step has a timeout, so a kernel that hangs costs minutes, not the session. Logs go to $OUT (or
# ./device-out), with a summary in preview-summary.txt.
#   scripts/device-preview.sh [steps]   (default: check grid sanitize time jest bench)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}; mkdir -p "$out"
bin=${BIN:-build-dev/monarch_cuda_check}
steps=${*:-check grid sanitize time jest bench}
sum="$out/preview-summary.txt"
: > "$sum"
note() { echo "$*" | tee -a "$sum"; }
verdict() { grep -E "^PASSED|^FAILED|FAIL" "$1" | tail -1; }
export MONARCH_COMMIT=${MONARCH_COMMIT:-$(cat .device/commit 2>/dev/null || echo unknown)}
note "commit $MONARCH_COMMIT; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"
for s in $steps; do
  case $s in
    check)
      timeout 300 "$bin" --no-time --preview > "$out/check-preview.log" 2>&1
      note "checker --preview: exit $? $(verdict "$out/check-preview.log")"
      timeout 300 "$bin" --no-time > "$out/check-verified.log" 2>&1
      note "checker (verified kernels): exit $? $(verdict "$out/check-verified.log")" ;;
    grid)
      for g in 1 7; do
        MONARCH_HOPPER_MAX_GRID=$g timeout 400 "$bin" --no-time --preview > "$out/check-preview-grid$g.log" 2>&1
        note "checker --preview, MONARCH_HOPPER_MAX_GRID=$g: exit $? $(verdict "$out/check-preview-grid$g.log")"
      done ;;
    sanitize)
      for tool in memcheck racecheck synccheck; do
        timeout 400 compute-sanitizer --tool $tool --error-exitcode 99 "$bin" --small --preview > "$out/sanitize-$tool-preview.log" 2>&1
        note "$tool --small --preview: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool-preview.log" | tail -1)"
      done ;;
    time)
      timeout 200 "$bin" --time-only --preview > "$out/time-preview.log" 2>&1; note "timing --preview: exit $?"
      timeout 200 "$bin" --time-only > "$out/time-verified.log" 2>&1; note "timing (verified): exit $?"
      paste <(sed -n '/^timing/,$p' "$out/time-verified.log" | cut -c1-80) <(sed -n '/^timing/,$p' "$out/time-preview.log" | awk '{print $(NF-2)}') \
        > "$out/time-ab.txt"; cat "$out/time-ab.txt" >> "$sum" ;;
    jest)
      MONARCH_PREVIEW_KERNELS=1 MONARCH_PREVIEW_STRICT=1 MONARCH_TEST_CUDA=1 timeout 500 jest --ci --runInBand test/cuda- > "$out/jest-preview.log" 2>&1
      note "GPU jest (test/cuda-*, previews on): exit $? $(grep -E '^Tests:' "$out/jest-preview.log" | tail -1)" ;;
    bench)
      for mode in verified preview; do
        pv=0; [ $mode = preview ] && pv=1
        for p in ${BENCH_PRESETS:-wan-480p self-forcing-chunk}; do
          MONARCH_PREVIEW_KERNELS=$pv MONARCH_PREVIEW_STRICT=$pv timeout 200 node bin/monarch-attn.js bench --backend cuda --preset $p --check \
            --json "$out/bench-$p-$mode.json" --markdown "$out/bench-$p-$mode.md" --no-progress > "$out/bench-$p-$mode.txt" 2>&1
          note "bench $p ($mode): exit $?"; grep -E "Monarch T=|FAIL" "$out/bench-$p-$mode.md" | head -6 >> "$sum"
        done
      done ;;
  esac
done
cat "$sum"
