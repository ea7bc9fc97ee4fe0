#!/usr/bin/env bash
# Session 12, call 4: the final tree: checker (full; new idle-slot cases; the fp16 overflow-key cases with zero
# queries in the other heads), the seed that failed in calls 2-3, the KV and Monarch GPU jest suites, memcheck,
# the checker with three CTAs and strict tensor maps, racecheck.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-210}
source device-tmp/lib.sh
export MONARCH_TEST_CUDA=1
run check-default 70 $bin --no-time
run small-seed 30 $bin --small --no-time --seed 60637078935
run jest-cuda 60 jest --ci --runInBand --forceExit test/cuda-kvcache-enqueue.test.ts test/cuda-monarch.test.ts
grep -E "^(PASS|FAIL) " $L/jest-cuda.log | sed "s/^/  /" >> $L/summary.txt
run memcheck 30 compute-sanitizer --tool memcheck --error-exitcode 99 $bin --small --no-time
MONARCH_HOPPER_MAX_GRID=3 MONARCH_PREVIEW_STRICT=1 run check-grid3-strict 60 $bin --no-time
run racecheck 50 compute-sanitizer --tool racecheck --error-exitcode 99 $bin --small --no-time
finish
