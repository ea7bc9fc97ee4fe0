#!/usr/bin/env bash
# On the GPU machine (after `source .device/activate.sh`): attribute the session-6 hang of
# test/cuda-stream-interop.test.ts. One forward per shape (scripts/hang-probe.js) on the default kernels,
# with the preview kernels and with every sm_90a step kernel off; the checker's sequence-like cases with
# the previews; then the file itself with the previews off and on, each under a timeout, with a dump of
# the thread states of a run that is still alive after its limit. Logs under $OUT (or ./device-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}; mkdir -p "$out"
bin=${BIN:-build-dev/monarch_cuda_check}
export MONARCH_TEST_CUDA=1
sum="$out/hang-summary.txt"; : > "$sum"
probe() { # name env...
  local name=$1; shift
  timeout -k 5 20 env "$@" node scripts/hang-probe.js > "$out/probe-$name.log" 2>&1
  echo "probe $name: exit $? (last: $(tail -1 "$out/probe-$name.log"))" >> "$sum"
}
probe default
probe preview MONARCH_PREVIEW_KERNELS=1
probe mma MONARCH_HOPPER_KERNELS=0
if [ -x "$bin" ]; then
  timeout -k 5 120 "$bin" --no-time --preview > "$out/check-preview.log" 2>&1
  echo "checker --preview: exit $? $(grep -E '^PASSED|^FAILED' "$out/check-preview.log" | tail -1) (last case: $(grep -E 'seq-like' "$out/check-preview.log" | tail -1 | cut -c1-80))" >> "$sum"
fi
for mode in default preview; do
  pv=; [ $mode = preview ] && pv=1  # default: MONARCH_PREVIEW_KERNELS empty, the size rules
  MONARCH_PREVIEW_KERNELS=$pv jest --ci --runInBand --verbose --forceExit --testTimeout=8000 test/cuda-stream-interop.test.ts > "$out/jest-$mode.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 60); do sleep 1; kill -0 $pid 2>/dev/null || break; done
  if kill -0 $pid 2>/dev/null; then
    for t in /proc/$pid/task/*; do echo "$t $(cat $t/comm) $(cat $t/wchan 2>/dev/null)"; done > "$out/jest-$mode-threads.txt"
    kill -9 $pid; echo "jest stream-interop ($mode kernels): still running at 60 s (threads: jest-$mode-threads.txt)" >> "$sum"
  else
    wait $pid; echo "jest stream-interop ($mode kernels): exit $? $(grep -E '^Tests:' "$out/jest-$mode.log" | tail -1)" >> "$sum"
  fi
done
cat "$sum"
