// An HTTP server (node:http) streaming Self-Forcing-shaped attention sessions over Server-Sent Events.
//   GET /session?chunks=N   text/event-stream: `start`, one `chunk` event per chunk, then `end` (or `error`)
//   GET /stats              JSON: sessions, memory (process, native counters), cache bytes, gate, event-loop delay
//   GET /profile            JSON: one chunk's kernel time vs its protocol path, and a whole video (profile.ts)
//   POST /scheduler?inflight=N&depth=M   changes the gate's limit (gate.ts) and/or the enqueue depth (session.ts)
//   GET /health             JSON { ok: true }
// Each session holds one KVCachePool (all layers' caches in one allocation, one plan) and its device
// output; pools are reset and reused by later sessions (no reallocation), at most maxSessions at once
// (503 beyond). The event loop only orchestrates: cache calls are async (enqueue + a wait on a libuv
// worker), downloads run on libuv workers, checksums on worker threads, the stand-in is precomputed.
// Run: node dist/examples/streaming-server/server.js --preset small   (see README.md for flags)
import * as http from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Command } from 'commander';
import { DeviceTensor, info, KVCachePool, memoryStats, MonarchAttention } from '../../lib';
import { ChecksumPool } from './checksum';
import { FairGate } from './gate';
import { profileChunk } from './profile';
import { checkDepth, DEFAULTS, monarchOptions, PRESETS, resolveConfig, windowOptions, type ServerConfig } from './config';
import { runSession, type CallMode, type SessionContext } from './session';
import { StandIn } from './standin';

export interface RunningServer {
  url: string;
  config: ServerConfig;
  /** Bytes one session's pool allocates (KVCachePool.bytesFor). */
  poolBytes: number;
  maxSessions: number;
  /** Start-up time (stand-in generation and upload), ms. */
  startupMs: number;
  close(): Promise<void>;
}

function sse(res: http.ServerResponse, event: string, data: unknown, id?: number): void {
  res.write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function delayStats(h: IntervalHistogram): { p50: number; p99: number; max: number; mean: number } {
  const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3;
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) };
}

/** Starts the server (port 0 = an ephemeral port); resolves once it listens. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const opts = monarchOptions(config), win = windowOptions(config);
  const attn = new MonarchAttention(opts);  // validates the options; pools are created from it
  const bytes = KVCachePool.bytesFor(opts, { layers: config.layers, ...win });
  let maxSessions = config.maxSessions;
  if (config.maxBytes > 0) maxSessions = Math.min(maxSessions, Math.floor(config.maxBytes / bytes.total));
  if (maxSessions < 1) {
    attn.dispose();
    throw new RangeError(`one session needs ${bytes.total} bytes, over --max-bytes ${config.maxBytes}`);
  }
  const t0 = process.hrtime.bigint();
  const device = attn.backend === 'cuda';
  let inputs: StandIn;
  try {
    inputs = await StandIn.create({ ...config, device });
  } catch (e) {
    attn.dispose();
    throw e;
  }
  const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const gate = new FairGate(config.inflight);
  const checksums = new ChecksumPool(config.checksumThreads);
  const chunkLimit = config.localAttnFrames > 0 ? config.maxChunks : Math.min(config.maxChunks, config.frames / config.chunkFrames);
  const chunkShape = [1, config.chunkFrames * config.height * config.width, config.heads, config.headDim];
  interface Slot { pool: KVCachePool; outs?: [DeviceTensor, DeviceTensor] }
  const idle: Slot[] = [];
  let live = 0, active = 0, completed = 0, failed = 0, rejected = 0, nextId = 1, profiling = false;

  const acquire = (): Slot | null => idle.pop() ?? (live < maxSessions ? create() : null);
  const create = (): Slot => {
    live++;
    let pool: KVCachePool | undefined;
    try {
      pool = attn.createKVCachePool({ layers: config.layers, ...win });
      if (!device) return { pool };
      const a = DeviceTensor.empty(chunkShape, config.dtype);
      try {
        return { pool, outs: [a, DeviceTensor.empty(chunkShape, config.dtype)] };
      } catch (e) {
        a.dispose();
        throw e;
      }
    } catch (e) {
      live--;
      pool?.dispose();
      throw e;
    }
  };
  const drop = (s: Slot): void => {
    live--;
    s.pool.dispose();
    s.outs?.forEach((t) => t.dispose());
  };
  if (config.preallocate) {
    try {
      for (let i = 0; i < maxSessions; i++) idle.push(create());
    } catch (e) {
      for (const p of idle) drop(p);
      await checksums.close();
      inputs.dispose();
      attn.dispose();
      throw e;
    }
  }
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const mode: CallMode = config.cacheCalls === 'auto' ? (device ? 'enqueue' : 'await') : config.cacheCalls;
  let depth = config.enqueueDepth;  // POST /scheduler?depth=N changes it for sessions started later
  const context = (s: Slot): SessionContext => ({ inputs, gate, checksums, outs: s.outs, mode, group: config.enqueueGroup, depth });

  const session = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> => {
    const raw = url.searchParams.get('chunks');
    const chunks = raw === null ? Math.min(config.defaultChunks, chunkLimit) : decimalInt(raw);
    if (!Number.isInteger(chunks) || chunks < 1 || chunks > chunkLimit) {
      json(res, 400, { error: `chunks must be an integer in 1..${chunkLimit}, received ${JSON.stringify(raw)}` });
      return;
    }
    const slot = profiling ? null : acquire();
    if (!slot) {
      rejected++;
      json(res, 503, { error: profiling ? 'server busy: profiling' : `server busy: ${maxSessions} sessions running` });
      return;
    }
    const id = nextId++, signal = { aborted: false };
    active++;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.on('close', () => { if (!res.writableEnded) signal.aborted = true; });
    sse(res, 'start', { session: id, chunks, backend: attn.backend, cacheCalls: mode, enqueueGroup: config.enqueueGroup, enqueueDepth: depth, layers: config.layers, passes: config.passes,
      chunkFrames: config.chunkFrames, chunkTokens: config.chunkFrames * config.height * config.width, poolBytes: bytes.total });
    const t0 = process.hrtime.bigint();
    let ok = true;
    try {
      const done = await runSession(slot.pool, context(slot), { chunks, passes: config.passes, chunkFrames: config.chunkFrames, signal },
        (r) => sse(res, 'chunk', r, r.chunk));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      sse(res, 'end', { session: id, chunks: done, ms, framesPerSecond: (done * config.chunkFrames) / (ms / 1e3), aborted: signal.aborted });
      completed++;
    } catch (e) {
      ok = false;
      failed++;
      sse(res, 'error', { session: id, message: (e as Error).message });
    } finally {
      active--;
      res.end();
      if (ok) idle.push(slot);
      else drop(slot);
    }
    void req;
  };

  const profile = async (res: http.ServerResponse, url: URL): Promise<void> => {
    const num = (name: string, dflt: number, max: number): number | null => {
      const raw = url.searchParams.get(name), n = raw === null ? dflt : decimalInt(raw);
      if (!Number.isInteger(n) || n < 1 || n > max) {
        json(res, 400, { error: `${name} must be an integer in 1..${max}, received ${JSON.stringify(raw)}` });
        return null;
      }
      return n;
    };
    const repeats = num('repeats', 5, 20), iters = num('iters', 50, 200);  // iters run synchronously on the event loop
    if (repeats === null || iters === null) return;
    if (active > 0 || profiling) return json(res, 409, { error: `profile needs an idle server (${active} sessions running)` });
    const slot = acquire();
    if (!slot) return json(res, 503, { error: `server busy: ${maxSessions} pools in use` });
    profiling = true;
    let ok = true;
    try {
      const r = await profileChunk(slot.pool, context(slot), { backend: attn.backend, frames: config.frames, chunkFrames: config.chunkFrames,
        passes: config.passes, rolling: config.localAttnFrames > 0 }, { repeats, iters });
      json(res, 200, r);
    } catch (e) {
      ok = false;
      json(res, 500, { error: (e as Error).message });
    } finally {
      profiling = false;
      if (ok) idle.push(slot);
      else drop(slot);
    }
  };

  // A query parameter as a plain decimal integer ("", " ", "0x10", "1e3" are not): NaN otherwise.
  const decimalInt = (raw: string): number => (/^[0-9]{1,9}$/.test(raw) ? Number(raw) : NaN);

  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');  // Node's parser lets odd targets through ("//[")
    } catch {
      return json(res, 400, { error: `malformed request target ${JSON.stringify(req.url)}` });
    }
    if (url.pathname === '/scheduler') {
      if (req.method !== 'POST') return json(res, 405, { error: 'POST /scheduler?inflight=N&depth=M' });
      const rawLimit = url.searchParams.get('inflight'), rawDepth = url.searchParams.get('depth');
      if (rawLimit === null && rawDepth === null) return json(res, 400, { error: 'POST /scheduler needs inflight=N and/or depth=M' });
      try {
        // Both checked before either is applied.
        const limit = rawLimit === null ? null : FairGate.check(decimalInt(rawLimit));
        const d = rawDepth === null ? null : checkDepth(decimalInt(rawDepth));
        if (limit !== null) gate.setLimit(limit);
        if (d !== null) depth = d;
      } catch (e) {
        return json(res, 400, { error: (e as Error).message });
      }
      return json(res, 200, { inflight: gate.stats().limit, depth });
    }
    if (req.method !== 'GET') return json(res, 405, { error: 'only GET (and POST /scheduler)' });
    if (url.pathname === '/health') return json(res, 200, { ok: true });
    if (url.pathname === '/stats') {
      const reset = url.searchParams.get('reset') === '1';
      const body = {
        sessions: { active, pooled: idle.length, live, maxSessions, completed, failed, rejected },
        cacheCalls: { mode, enqueueGroup: config.enqueueGroup, enqueueDepth: depth },
        memory: process.memoryUsage(),
        // The addon's process-wide counters: deviceBytes / deviceAllocations are what the pools, their
        // outputs and the stand-in hold on the GPU (flat once every pool exists).
        native: memoryStats(),
        cacheBytes: { perSession: bytes, held: live * bytes.total, inputs: inputs.bytes },
        standIn: inputs.generated,
        gate: gate.stats(reset),
        eventLoopDelayMs: delayStats(loop),
      };
      if (reset) loop.reset();
      return json(res, 200, body);
    }
    if (url.pathname === '/profile') {
      profile(res, url).catch((e: Error) => { if (!res.headersSent) json(res, 500, { error: e.message }); });
      return;
    }
    if (url.pathname === '/session') {
      session(req, res, url).catch((e: Error) => {
        if (!res.headersSent) json(res, 500, { error: e.message });
        else res.end();
      });
      return;
    }
    json(res, 404, { error: `no route ${url.pathname}` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const addr = server.address() as { port: number };
  return {
    url: `http://${config.host}:${addr.port}`, config, poolBytes: bytes.total, maxSessions, startupMs,
    close: async () => {
      loop.disable();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections?.();
      while (active > 0 || profiling) await new Promise((r) => setTimeout(r, 5));
      for (const p of idle) drop(p);
      idle.length = 0;
      await checksums.close();
      inputs.dispose();
      attn.dispose();
    },
  };
}

function intOpt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, received ${v}`);
  return n;
}

async function main(): Promise<void> {
  // Each pending async call and each download waits on a libuv worker: give concurrent sessions enough of them
  // (at most `inflight` calls plus one download per session).
  process.env.UV_THREADPOOL_SIZE ??= '24';
  const cmd = new Command('streaming-server')
    .option('--preset <name>', `shapes (${Object.keys(PRESETS).join(', ')})`, 'small')
    .option('--host <host>', 'listen address', DEFAULTS.host)
    .option('--port <n>', 'port (0 = ephemeral)', intOpt)
    .option('--backend <b>', 'cpu | cuda | auto')
    .option('--frames <n>', 'latent frames of the layout', intOpt)
    .option('--height <n>', 'latent height', intOpt)
    .option('--width <n>', 'latent width', intOpt)
    .option('--chunk-frames <n>', 'frames per chunk', intOpt)
    .option('--factorization <f>', 'monarchrt | vmonarch')
    .option('--heads <n>', 'heads', intOpt)
    .option('--head-dim <n>', 'head dim', intOpt)
    .option('--dtype <t>', 'float32 | float16 | bfloat16')
    .option('--iters <n>', 'Monarch T', intOpt)
    .option('--layers <n>', 'transformer layers per session', intOpt)
    .option('--passes <n>', 'denoising passes per chunk (plus one context pass)', intOpt)
    .option('--local-attn-frames <n>', 'rolling window in frames (0 = keep all)', intOpt)
    .option('--sink-frames <n>', 'sink frames never evicted', intOpt)
    .option('--max-sessions <n>', 'concurrent sessions', intOpt)
    .option('--max-bytes <n>', 'memory budget for all session pools (0 = none)', intOpt)
    .option('--chunks <n>', 'default chunks per session', intOpt)
    .option('--seed <n>', 'stand-in seed', intOpt)
    .option('--inflight <n>', 'cache calls in flight across sessions (fair gate; 0 = no gate)', intOpt)
    .option('--checksum-threads <n>', 'worker threads checksumming outputs', intOpt)
    .option('--preallocate', 'create every session pool at start-up')
    .option('--cache-calls <mode>', "auto | enqueue (enqueueAttend + one flush per group) | await (one awaited attend per call)")
    .option('--enqueue-group <n>', 'enqueue mode: cache calls per flush and per gate turn', intOpt)
    .option('--enqueue-depth <n>', 'enqueue mode: groups in flight per session (1..64)', intOpt);
  const o = cmd.parse().opts();
  const config = resolveConfig(o.preset, {
    host: o.host, port: o.port ?? DEFAULTS.port, backend: o.backend, frames: o.frames, height: o.height, width: o.width,
    chunkFrames: o.chunkFrames, factorization: o.factorization, heads: o.heads, headDim: o.headDim, dtype: o.dtype,
    numIters: o.iters, layers: o.layers, passes: o.passes, localAttnFrames: o.localAttnFrames, sinkFrames: o.sinkFrames,
    maxSessions: o.maxSessions, maxBytes: o.maxBytes, defaultChunks: o.chunks, seed: o.seed,
    inflight: o.inflight, checksumThreads: o.checksumThreads, preallocate: o.preallocate,
    cacheCalls: o.cacheCalls, enqueueGroup: o.enqueueGroup, enqueueDepth: o.enqueueDepth,
  });
  const s = await startServer(config);
  process.stdout.write(`${JSON.stringify({ listening: s.url, poolBytes: s.poolBytes, maxSessions: s.maxSessions, startupMs: Math.round(s.startupMs), gpu: info().device?.name ?? null, config })}\n`);
  const stop = (): void => { void s.close().then(() => process.exit(0)); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`streaming-server: ${e.message}\n`);
    process.exit(1);
  });
}
