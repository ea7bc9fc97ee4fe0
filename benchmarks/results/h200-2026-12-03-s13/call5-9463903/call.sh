#!/usr/bin/env bash
# Session 13, call 5: packed query units for the wide first R-step: small checker first (a hang shows
# here), default checker, sanitizers, 720p stage timings and bench (T = 1, 2), 480p bench, Monarch jest.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-300}
source device-tmp/lib.sh
export MONARCH_TEST_CUDA=1
run check-small 30 $bin --small --no-time
run check-default 60 $bin --no-time
grep -E "FAIL" $L/check-default.log | head -10 | sed "s/^/  /" >> $L/summary.txt
run time-720p 30 $bin --time-only --time-case 720p
grep -E "^monarch" $L/time-720p.log | sed "s/^/  /" >> $L/summary.txt
B="node bin/monarch-attn.js bench --backend cuda --no-progress --no-python -T 1,2"
for p in wan-720p wan-480p; do
  run bench-$p 60 $B --preset $p --check --json $L/bench-$p.json --markdown $L/bench-$p.md
  grep -E "^\| (Monarch)" $L/bench-$p.md | cut -d'|' -f2,3,4 | sed "s/^/  $p:/" >> $L/summary.txt
done
run memcheck 30 compute-sanitizer --tool memcheck --error-exitcode 99 $bin --small --no-time
run racecheck 70 compute-sanitizer --tool racecheck --error-exitcode 99 $bin --small --no-time
run jest-cuda 40 jest --ci --runInBand --forceExit test/cuda-monarch.test.ts
grep -E "^(PASS|FAIL) |✕" $L/jest-cuda.log | head -10 | sed "s/^/  /" >> $L/summary.txt
finish
