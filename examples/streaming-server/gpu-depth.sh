#!/usr/bin/env bash
# Pipelined flushes, recorded: what --enqueue-depth buys at 480p (default preset 480p-rolling: Wan 1.3B
# shapes, 30 layers × (4 denoising + 1 context) passes per 3-frame chunk, a 21-frame window with a 3-frame
# sink, 10 calls per flush). One server (enqueued calls, depth 2), then load.js twice:
#   depth 2: /profile (kernel vs protocol per chunk; the protocol at depth 1 and 2 side by side), one
#            session × STREAM_CHUNKS, STREAM_SESSIONS × STREAM_CHUNKS;
#   depth 1: the same without the profile (POST /scheduler?depth=1 first).
# About 1.5–2 minutes on an H200 (under 3). JSON into OUTDIR; a summary per depth at the end: the protocol
# overhead over calls × kernel time (target ≤ 10 %), protocol + server overhead of a one-session chunk,
# chunks/s with 8 sessions vs one, p99 / p50, event-loop delay p99 (target ≤ 5 ms), errors.
#   npm run build:ts && examples/streaming-server/gpu-depth.sh OUTDIR
#   STREAM_PRESET=small examples/streaming-server/gpu-depth.sh OUTDIR     # the same on the CPU backend (mode enqueue)
# Environment: STREAM_PRESET, STREAM_PORT (8091), STREAM_SESSIONS (8), STREAM_CHUNKS (20), STREAM_ENQUEUE_GROUP (10),
# STREAM_DEPTHS ("2 1": the first one also runs /profile), MONARCH_FENCE_SPIN (1 = fence waits spin instead of
# sleeping), STREAM_TAG (a prefix for the output files).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-stream-out}}
mkdir -p "$out"
port=${STREAM_PORT:-8091}
url=http://127.0.0.1:$port
js=dist/examples/streaming-server
tag=${STREAM_TAG:-}
sessions=${STREAM_SESSIONS:-8}
chunks=${STREAM_CHUNKS:-20}
depths=${STREAM_DEPTHS:-2 1}
[ -f $js/server.js ] || { echo "gpu-depth.sh: $js/server.js missing; run npm run build:ts first" >&2; exit 2; }

UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-24} node $js/server.js --preset "${STREAM_PRESET:-480p-rolling}" --port "$port" \
  --max-sessions "$sessions" --preallocate --cache-calls enqueue --enqueue-group "${STREAM_ENQUEUE_GROUP:-10}" \
  --enqueue-depth "${depths%% *}" > "$out/${tag}depth-server.log" 2>&1 &
srv=$!
cleanup() { kill $srv 2> /dev/null; wait $srv 2> /dev/null; }
trap cleanup EXIT
health() { node -e "require('http').get('$url/health', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"; }
for i in $(seq 1 240); do health && break; kill -0 $srv 2> /dev/null || break; sleep 0.5; done
health || { echo "gpu-depth.sh: the server did not come up:" >&2; tail -20 "$out/${tag}depth-server.log" >&2; exit 1; }
head -c 400 "$out/${tag}depth-server.log"; echo

rc=0
first=1
for d in $depths; do
  prof=; [ $first = 1 ] && prof=--profile
  echo "== depth $d: ${prof:+profile, }1 × $chunks, $sessions × $chunks"
  timeout 120 node $js/load.js --url "$url" --stats-every 250 $prof --enqueue-depth "$d" --sessions "$sessions" --chunks "$chunks" \
    > "$out/${tag}depth$d.json" 2> "$out/${tag}depth$d.err" || rc=$?
  echo "depth $d: load exit $rc"
  first=0
done
node -e "
const fs = require('fs'), [dir, tag, depths] = process.argv.slice(1);
const read = (d) => { try { return JSON.parse(fs.readFileSync(dir + '/' + tag + 'depth' + d + '.json', 'utf8')); } catch { return null; } };
const runs = depths.split(' ').filter(Boolean).map((d) => [d, read(d)]);
const prof = runs.map(([, r]) => r && r.profile).find(Boolean);
const pct = (x) => (x === null || x === undefined ? 'n/a' : (100 * x).toFixed(1) + ' %');
if (prof) {
  console.log('kernel ' + prof.kernel.msPerCall.toFixed(4) + ' ms/call, ' + prof.kernel.msPerChunk.toFixed(1) + ' ms per chunk (' + prof.callsPerChunk + ' calls, ' + prof.keyFrames + ' key frames)');
  for (const [d, p] of Object.entries(prof.depths)) console.log('  profile depth ' + d + ': ' + p.chunkMs.toFixed(2) + ' ms per chunk, protocol overhead ' + pct(p.overhead) + ' (' +
    (1e3 * p.overheadMsPerCall).toFixed(1) + ' us/call; target <= 10 %), main thread ' + (1e3 * p.mainThreadMsPerCall).toFixed(1) + ' us/call');
  if (prof.modes.await) console.log('  profile await: overhead ' + pct(prof.modes.await.overhead));
}
for (const [d, r] of runs) {
  if (!r) { console.log('depth ' + d + ': no JSON'); continue; }
  const b = r.baseline, l = r.load, k = prof ? prof.kernel.msPerChunk : null;
  const total = b && k ? b.steadyChunkMs.p50 / k - 1 : null;
  console.log('depth ' + d + ': one session ' + b.steadyChunkMs.p50.toFixed(1) + ' ms per full-cache chunk (protocol + server overhead ' + pct(total) +
    '), ' + l.sessions + ' sessions ' + l.chunksPerS.toFixed(2) + ' chunks/s (' + (r.aggregateVsBaseline ?? NaN).toFixed(3) + 'x one session), p99/p50 ' +
    (l.chunkMs.p99OverP50 ?? NaN).toFixed(3) + ', loop p99 ' + l.eventLoopDelayMs.p99 + ' ms, gate waited ' + l.gate.waited + '/' + l.gate.calls +
    ', checksums agree ' + l.checksumsAgree + ', errors ' + r.errors);
}" "$out" "$tag" "$depths" | tee "$out/${tag}depth-summary.txt"
exit $rc
