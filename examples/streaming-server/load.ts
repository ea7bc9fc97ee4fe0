// Load test for the streaming server. Phases, in order (each optional but the load):
//   profile   GET /profile: one chunk's kernel time vs its protocol path, a whole video's frames/s;
//   baseline  one session alone, back to back (--chunks chunks);
//   load      --sessions concurrent sessions of --chunks chunks;
//   long      --long-sessions sessions of --long-chunks chunks (rolling window), memory sampled throughout.
// Prints one JSON object: per phase the chunk latency p50/p99 (server-measured compute time per chunk,
// gate waits included; `steady`: only chunks whose cache is full) and the client-side gap between chunk
// events, chunks/s, per-session fairness, the server's event-loop delay, memory samples (/stats:
// process RSS/heap, the addon's device/host byte and allocation counters) with their flatness, checksum
// agreement and errors; then `overhead` (kernel vs protocol vs server per chunk) and `targets` (issue 11's
// numbers, each with its value and pass). Exits 1 when there were errors.
// Run: node dist/examples/streaming-server/load.js --url http://127.0.0.1:8080 --sessions 8 --chunks 20
import * as http from 'node:http';
import { Command } from 'commander';
import type { ProfileResult } from './profile';

export interface LoadOptions {
  url: string; sessions: number; chunks: number; statsEveryMs?: number;
  /** Run the one-session baseline first (default true). */
  baseline?: boolean;
  /** Set the server's gate limit first (POST /scheduler). */
  inflight?: number;
  /** Set the server's enqueue depth first (POST /scheduler?depth=N; sessions started after it). */
  enqueueDepth?: number;
  /** Run GET /profile first. */
  profile?: boolean | { repeats: number; iters: number };
  /** A long phase after the load (0 / undefined = none). */
  longSessions?: number; longChunks?: number;
}

interface ChunkRecord { ms: number; framesCached: number; checksum: { sum: number; sumSq: number } }
interface SessionRun { records: ChunkRecord[]; gapsMs: number[]; errors: string[] }

export function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

function request(method: string, url: string): Promise<any> {  // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        try {
          const j = JSON.parse(body);
          if ((res.statusCode ?? 0) >= 400) reject(new Error(`${method} ${url}: HTTP ${res.statusCode}: ${j.error ?? body}`));
          else resolve(j);
        } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.end();
  });
}
const getJson = (url: string): Promise<any> => request('GET', url);  // eslint-disable-line @typescript-eslint/no-explicit-any

/** One session: GET /session?chunks=N, parsing `event:` / `data:` blocks of the SSE stream. */
export function runSessionClient(base: string, chunks: number): Promise<SessionRun> {
  const run: SessionRun = { records: [], gapsMs: [], errors: [] };
  return new Promise((resolve) => {
    let last = process.hrtime.bigint(), buf = '';
    const req = http.get(`${base}/session?chunks=${chunks}`, (res) => {
      if (res.statusCode !== 200) {
        run.errors.push(`HTTP ${res.statusCode}`);
        res.resume();
        res.on('end', () => resolve(run));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1], data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev === 'chunk' && data) {
            const now = process.hrtime.bigint();
            const r = JSON.parse(data) as ChunkRecord;
            run.records.push({ ms: r.ms, framesCached: r.framesCached, checksum: r.checksum });
            run.gapsMs.push(Number(now - last) / 1e6);
            last = now;
          } else if (ev === 'start') {
            last = process.hrtime.bigint();
          } else if (ev === 'error') {
            run.errors.push(data ?? 'error event');
          }
        }
      });
      res.on('end', () => {
        if (run.records.length !== chunks && run.errors.length === 0) run.errors.push(`session ended after ${run.records.length} of ${chunks} chunks`);
        resolve(run);
      });
      res.on('error', (e) => { run.errors.push(e.message); resolve(run); });
    });
    req.on('error', (e) => { run.errors.push(e.message); resolve(run); });
  });
}

export interface MemorySample {
  tMs: number; active: number; rss: number; heapUsed: number; external: number; arrayBuffers: number;
  deviceBytes: number; deviceAllocations: number; hostBytes: number; pinnedBytes: number; cacheBytesHeld: number;
}

const range = (xs: number[]): { first: number; last: number; max: number; min: number } =>
  ({ first: xs[0], last: xs[xs.length - 1], max: Math.max(...xs), min: Math.min(...xs) });

/**
 * Flatness over the samples taken while all `sessions` ran (the pools exist by then): device bytes and
 * allocation counts must not change; RSS may move by GC but must not grow by more than
 * max(64 MiB, 5 % of the first sample).
 */
export function flatness(samples: MemorySample[], sessions: number) {
  const s = samples.filter((x) => x.active === sessions);
  if (s.length < 2) return { samples: s.length, flat: null as boolean | null, reason: 'fewer than 2 samples with every session running' };
  const dev = range(s.map((x) => x.deviceBytes)), allocs = range(s.map((x) => x.deviceAllocations));
  const rss = range(s.map((x) => x.rss)), heap = range(s.map((x) => x.heapUsed)), host = range(s.map((x) => x.hostBytes));
  const rssLimit = Math.max(64 * 2 ** 20, 0.05 * rss.first);
  const deviceFlat = dev.max === dev.min && allocs.first === allocs.last;
  const rssFlat = rss.last - rss.first <= rssLimit && rss.max - rss.first <= 2 * rssLimit;
  return {
    samples: s.length, spanMs: s[s.length - 1].tMs - s[0].tMs,
    deviceBytes: dev, deviceAllocations: allocs, hostBytes: host, rss, heapUsed: heap,
    rssGrowthBytes: rss.last - rss.first, rssLimitBytes: rssLimit, deviceFlat, rssFlat, flat: deviceFlat && rssFlat,
  };
}

async function phase(o: LoadOptions, sessions: number, chunks: number) {
  const samples: MemorySample[] = [];
  await getJson(`${o.url}/stats?reset=1`);
  const t0 = process.hrtime.bigint();
  const sample = async (): Promise<void> => {
    const s = await getJson(`${o.url}/stats`);
    samples.push({ tMs: Number(process.hrtime.bigint() - t0) / 1e6, active: s.sessions.active, rss: s.memory.rss, heapUsed: s.memory.heapUsed,
      external: s.memory.external, arrayBuffers: s.memory.arrayBuffers, deviceBytes: s.native.deviceBytes,
      deviceAllocations: s.native.deviceAllocations, hostBytes: s.native.hostBytes, pinnedBytes: s.native.pinnedBytes, cacheBytesHeld: s.cacheBytes.held });
  };
  const timer = setInterval(() => { void sample().catch(() => undefined); }, o.statsEveryMs ?? 1000);
  const runs = await Promise.all(Array.from({ length: sessions }, () => runSessionClient(o.url, chunks)));
  clearInterval(timer);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const stats = await getJson(`${o.url}/stats`);
  await sample();
  const recs = runs.flatMap((r) => r.records), chunkMs = recs.map((r) => r.ms), gaps = runs.flatMap((r) => r.gapsMs);
  const full = Math.max(0, ...recs.map((r) => r.framesCached));
  const steady = recs.filter((r) => r.framesCached === full).map((r) => r.ms);
  const lat = (xs: number[]) => {
    const p50 = quantile(xs, 0.5), p99 = quantile(xs, 0.99);
    return { n: xs.length, p50, p99, max: quantile(xs, 1), p99OverP50: p50 && p99 ? p99 / p50 : null };
  };
  const perSessionMean = runs.map((r) => r.records.reduce((a, x) => a + x.ms, 0) / Math.max(1, r.records.length));
  const done = recs.length;
  const sums = runs.map((r) => JSON.stringify(r.records.map((x) => x.checksum)));
  return {
    sessions, chunksPerSession: chunks, chunks: done, wallS, chunksPerS: done / wallS,
    chunkMs: lat(chunkMs),
    steadyChunkMs: { framesCached: full, ...lat(steady) },
    clientGapMs: { p50: quantile(gaps, 0.5), p99: quantile(gaps, 0.99) },
    perSessionChunks: runs.map((r) => r.records.length),
    // No session starves: the slowest session's mean chunk time over the fastest's.
    fairness: { perSessionMeanMs: perSessionMean, slowestOverFastest: Math.max(...perSessionMean) / Math.min(...perSessionMean) },
    gate: stats.gate,
    eventLoopDelayMs: stats.eventLoopDelayMs,
    memory: { samples, flatness: flatness(samples, sessions), cacheBytes: stats.cacheBytes },
    // Sessions run the same stand-in inputs, so every session's checksums must agree.
    checksumsAgree: sums.every((x) => x === sums[0]),
    errors: runs.flatMap((r) => r.errors),
  };
}

type Phase = Awaited<ReturnType<typeof phase>>;

const check = (value: number | boolean | null | undefined, ok: (v: number) => boolean, target: string) =>
  ({ value: value ?? null, target, pass: typeof value === 'number' ? ok(value) : value === true });

export async function runLoad(o: LoadOptions) {
  if (o.inflight !== undefined) await request('POST', `${o.url}/scheduler?inflight=${o.inflight}`);
  if (o.enqueueDepth !== undefined) await request('POST', `${o.url}/scheduler?depth=${o.enqueueDepth}`);
  let profile: ProfileResult | null = null;
  if (o.profile) {
    const p = o.profile === true ? { repeats: 5, iters: 50 } : o.profile;
    profile = await getJson(`${o.url}/profile?repeats=${p.repeats}&iters=${p.iters}`) as ProfileResult;
  }
  const baseline = o.baseline === false ? null : await phase(o, 1, o.chunks);
  const load = await phase(o, o.sessions, o.chunks);
  const long: Phase | null = o.longSessions ? await phase(o, o.longSessions, o.longChunks ?? 100) : null;
  const errors = (baseline?.errors.length ?? 0) + load.errors.length + (long?.errors.length ?? 0);
  const aggregateVsBaseline = baseline ? load.chunksPerS / baseline.chunksPerS : null;

  // Per chunk: kernels (profile), + protocol (profile's chunk loop), + server (a baseline session's chunk).
  let overhead = null;
  if (profile) {
    const protocolChunk = profile.roll ? profile.roll.chunkMs : profile.protocol.chunkMs;
    const serverChunk = baseline?.steadyChunkMs.p50 ?? null;
    overhead = {
      mode: profile.protocol.mode,
      kernelMsPerChunk: profile.kernel.msPerChunk, kernelMsPerCall: profile.kernel.msPerCall,
      protocolMsPerCall: profile.protocol.msPerCall, protocolOverheadMsPerCall: profile.protocol.overheadMsPerCall,
      /** The profile's chunk loop over calls × kernel, − 1, per mode (no HTTP, no gate). */
      protocol: profile.protocol.overhead,
      byMode: Object.fromEntries(Object.entries(profile.modes).map(([m, p]) => [m, { overhead: p.overhead, msPerCall: p.msPerCall, mainThreadMsPerCall: p.mainThreadMsPerCall }])),
      /** 'enqueue' at each profiled depth (groups in flight per session). */
      byDepth: Object.fromEntries(Object.entries(profile.depths ?? {}).map(([d, p]) => [d, { overhead: p.overhead, msPerCall: p.msPerCall, chunkMs: p.chunkMs }])),
      protocolChunkMs: protocolChunk, serverChunkMs: serverChunk,
      serverOverheadMsPerChunk: serverChunk === null ? null : serverChunk - protocolChunk,
      /** (server chunk) / (calls × kernel) − 1: what the protocol and the server add to the kernels. */
      total: serverChunk === null ? null : serverChunk / profile.kernel.msPerChunk - 1,
    };
  }
  const flat = long?.memory.flatness ?? load.memory.flatness;
  return {
    url: o.url, server: await getJson(`${o.url}/stats`).then((s) => ({ sessions: s.sessions, gate: s.gate, cacheCalls: s.cacheCalls })),
    profile, baseline, load, long, overhead,
    aggregateVsBaseline,
    targets: {
      aggregateVsBaseline: check(aggregateVsBaseline, (v) => v >= 0.9, '>= 0.9'),
      p99OverP50: check(load.chunkMs.p99OverP50, (v) => v <= 1.5, '<= 1.5 (load phase, every chunk)'),
      eventLoopDelayP99Ms: check(Math.max(load.eventLoopDelayMs.p99, long?.eventLoopDelayMs.p99 ?? 0), (v) => v <= 5, '<= 5 (load and long phases)'),
      memoryFlat: check(flat.flat, () => true, `device bytes and allocations constant, RSS growth <= max(64 MiB, 5 %) (${long ? 'long' : 'load'} phase)`),
      errors: check(errors, (v) => v === 0, '0'),
      protocolAndServerOverhead: check(overhead?.total, (v) => v <= 0.1, '<= 0.10 over calls x kernel time'),
      protocolOverhead: check(overhead?.protocol, (v) => v <= 0.1, `<= 0.10 over calls x kernel time (profile, ${overhead?.mode ?? 'no'} mode)`),
      checksumsAgree: check(load.checksumsAgree && (long?.checksumsAgree ?? true), () => true, 'every session the same checksums'),
    },
    errors,
  };
}

if (require.main === module) {
  const int = (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, received ${v}`);
    return n;
  };
  const o = new Command('load')
    .requiredOption('--url <url>', 'server base URL, e.g. http://127.0.0.1:8080')
    .option('--sessions <n>', 'concurrent sessions', int, 8)
    .option('--chunks <n>', 'chunks per session (baseline and load)', int, 20)
    .option('--stats-every <ms>', 'memory sampling period', int, 1000)
    .option('--no-baseline', 'skip the single-session baseline')
    .option('--inflight <n>', 'set the server\'s gate limit first (0 = no gate)', int)
    .option('--enqueue-depth <n>', 'set the server\'s enqueue depth first (groups in flight per session, 1..64)', int)
    .option('--profile', 'run GET /profile first (kernel vs protocol time, whole-video frames/s)')
    .option('--long-sessions <n>', 'sessions of the long phase (0 = none)', int, 0)
    .option('--long-chunks <n>', 'chunks per session of the long phase', int, 100)
    .parse().opts();
  runLoad({ url: o.url, sessions: o.sessions, chunks: o.chunks, statsEveryMs: o.statsEvery, baseline: o.baseline, inflight: o.inflight, enqueueDepth: o.enqueueDepth,
    profile: o.profile === true, longSessions: o.longSessions, longChunks: o.longChunks })
    .then((r) => { process.stdout.write(`${JSON.stringify(r, null, 2)}\n`); process.exit(r.errors ? 1 : 0); })
    .catch((e: Error) => { process.stderr.write(`load: ${e.message}\n`); process.exit(2); });
}
