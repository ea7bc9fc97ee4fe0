# Sourced by the device call scripts (device-tmp/s15callN.sh): unpacks the checker and the addon, and
# gives run NAME TIMEOUT CMD... (log to $L/NAME.log, a line in $L/summary.txt, skipped past $BUDGET s)
# and finish.
source .device/activate.sh
L=${OUT:-device-out}; mkdir -p "$L"
T0=$(date +%s)
export MONARCH_COMMIT=$(cat .device/commit 2>/dev/null || echo unknown)
mkdir -p build/Release /tmp/chk
xz -dc device-tmp/chk.xz > /tmp/chk/monarch_cuda_check && chmod +x /tmp/chk/monarch_cuda_check
xz -dc device-tmp/monarch.node.xz > build/Release/monarch.node
bin=/tmp/chk/monarch_cuda_check
{ echo "commit $MONARCH_COMMIT"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > "$L/gpu.txt" 2>&1
cat "$L/gpu.txt" >> "$L/summary.txt"
run() {
  local name=$1 t=$2; shift 2
  local el=$(( $(date +%s) - T0 ))
  if [ $(( el + t )) -gt "${BUDGET:-500}" ]; then echo "$name skipped (elapsed ${el}s, budget ${BUDGET:-500}s)" >> "$L/summary.txt"; return 0; fi
  local s=$(date +%s)
  timeout "$t" "$@" > "$L/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s ))s $(grep -E 'passed|failed|ERROR SUMMARY|RACECHECK SUMMARY' "$L/$name.log" | tail -1)" >> "$L/summary.txt"
  return 0
}
finish() {
  echo "total $(( $(date +%s) - T0 ))s" >> "$L/summary.txt"
  for f in "$L"/*.log; do [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 150000 ] && gzip -f "$f"; done
  cat "$L/summary.txt"
}
