#!/usr/bin/env bash
# The streaming example under load, recorded: one server (default preset 480p-rolling: Wan 1.3B shapes,
# 30 layers × (4 denoising + 1 context) passes per 3-frame chunk, a 21-frame window with a 3-frame sink),
# then load.js: /profile (kernel vs protocol per chunk, a whole 21-frame video), 1 session × 20 chunks,
# 8 sessions × 20 chunks, 2 sessions × 100 chunks (memory flatness), and the 8-session run again at other
# gate limits. About 2–3 minutes on an H200. JSON into OUTDIR; the targets are printed at the end.
#   npm run build:ts && examples/streaming-server/gpu-run.sh OUTDIR
#   STREAM_PRESET=small examples/streaming-server/gpu-run.sh OUTDIR     # the same on the CPU backend, small shapes
# Environment: STREAM_PRESET, STREAM_PORT (8089), STREAM_SESSIONS (8), STREAM_CHUNKS (20), STREAM_LONG_SESSIONS (2),
# STREAM_LONG_CHUNKS (100), STREAM_INFLIGHT_SWEEP ("2 8 0"; the main run uses the server's default, 4; "" = none),
# STREAM_CACHE_CALLS (auto: enqueued calls on CUDA; await = the per-call loop), STREAM_ENQUEUE_GROUP (10),
# STREAM_TAG (a prefix for the output files, so that several runs can share OUTDIR).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-stream-out}}
mkdir -p "$out"
port=${STREAM_PORT:-8089}
url=http://127.0.0.1:$port
js=dist/examples/streaming-server
[ -f $js/server.js ] || { echo "gpu-run.sh: $js/server.js missing; run npm run build:ts first" >&2; exit 2; }

smi=
if command -v nvidia-smi > /dev/null; then
  # The driver's view of device memory, once a second, alongside the addon's counters in the JSON.
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 1000 > "$out/nvidia-smi-memory.csv" 2>&1 &
  smi=$!
fi
tag=${STREAM_TAG:-}
UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-24} node $js/server.js --preset "${STREAM_PRESET:-480p-rolling}" --port "$port" \
  --max-sessions "${STREAM_SESSIONS:-8}" --preallocate --cache-calls "${STREAM_CACHE_CALLS:-auto}" \
  --enqueue-group "${STREAM_ENQUEUE_GROUP:-10}" > "$out/${tag}stream-server.log" 2>&1 &
srv=$!
cleanup() { kill $srv 2> /dev/null; wait $srv 2> /dev/null; [ -n "$smi" ] && kill $smi 2> /dev/null; }
trap cleanup EXIT
health() { node -e "require('http').get('$url/health', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"; }
for i in $(seq 1 240); do health && break; kill -0 $srv 2> /dev/null || break; sleep 0.5; done
health || { echo "gpu-run.sh: the server did not come up:" >&2; tail -20 "$out/${tag}stream-server.log" >&2; exit 1; }
head -c 400 "$out/${tag}stream-server.log"; echo

rc=0
echo "== profile, 1 × ${STREAM_CHUNKS:-20}, ${STREAM_SESSIONS:-8} × ${STREAM_CHUNKS:-20}, long ${STREAM_LONG_SESSIONS:-2} × ${STREAM_LONG_CHUNKS:-100}"
timeout 150 node $js/load.js --url "$url" --stats-every 250 --profile --sessions "${STREAM_SESSIONS:-8}" --chunks "${STREAM_CHUNKS:-20}" \
  --long-sessions "${STREAM_LONG_SESSIONS:-2}" --long-chunks "${STREAM_LONG_CHUNKS:-100}" > "$out/${tag}stream-load.json" 2> "$out/${tag}stream-load.err" || rc=$?
echo "load exit $rc"
for k in ${STREAM_INFLIGHT_SWEEP-2 8 0}; do
  timeout 60 node $js/load.js --url "$url" --stats-every 250 --inflight "$k" --sessions "${STREAM_SESSIONS:-8}" --chunks "${STREAM_CHUNKS:-20}" \
    > "$out/${tag}stream-load-inflight$k.json" 2> "$out/${tag}stream-load-inflight$k.err"; echo "inflight $k: load exit $?"
done
node -e "
const fs = require('fs'), dir = process.argv[1];
for (const f of fs.readdirSync(dir).filter((x) => x.startsWith(process.argv[2] + 'stream-load') && x.endsWith('.json')).sort()) {
  let r; try { r = JSON.parse(fs.readFileSync(dir + '/' + f, 'utf8')); } catch { console.log(f + ': no JSON'); continue; }
  const l = r.load, p = r.profile;
  console.log(f + ': gate ' + l.gate.limit + ', ' + l.sessions + ' sessions: ' + l.chunksPerS.toFixed(2) + ' chunks/s (' + (r.aggregateVsBaseline ?? NaN).toFixed(3) +
    'x one session), chunk p50/p99 ' + l.chunkMs.p50.toFixed(1) + '/' + l.chunkMs.p99.toFixed(1) + ' ms, loop p99 ' + l.eventLoopDelayMs.p99 + ' ms, errors ' + r.errors);
  if (p) console.log('  kernel ' + p.kernel.msPerCall.toFixed(4) + ' ms/call, protocol (' + p.protocol.mode + ') ' + p.protocol.msPerCall.toFixed(4) + ' ms/call (+' +
    (1e3 * p.protocol.overheadMsPerCall).toFixed(1) + ' us), total overhead ' + (100 * r.overhead.total).toFixed(1) + ' %, 21-frame video ' +
    p.video.ms.toFixed(1) + ' ms = ' + p.video.latentFramesPerSecond.toFixed(1) + ' latent frames/s');
  if (p) for (const [m, x] of Object.entries(p.modes)) console.log('  mode ' + m + ': ' + x.msPerCall.toFixed(4) + ' ms/call, overhead ' + (100 * x.overhead).toFixed(1) +
    ' % over the kernels, main thread ' + (1e3 * x.mainThreadMsPerCall).toFixed(1) + ' us/call' + (x.group ? ', ' + x.group + ' calls per flush' : ''));
  for (const [k, t] of Object.entries(r.targets)) console.log('  ' + (t.pass ? 'PASS' : 'FAIL') + ' ' + k + ' = ' + JSON.stringify(t.value) + ' (' + t.target + ')');
}" "$out" "$tag" | tee "$out/${tag}stream-summary.txt"
exit $rc
