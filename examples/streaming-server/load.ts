// Load test for the streaming server: one session alone (the baseline), then N concurrent sessions, each
// reading its SSE stream. Prints one JSON object: per-chunk latency p50/p99 (server-measured compute
// time per chunk and client-side gap between chunk events), aggregate chunks/s vs the baseline, the
// server's event-loop delay during the load, memory sampled over time (/stats), and every error.
// Run: node dist/examples/streaming-server/load.js --url http://127.0.0.1:8080 --sessions 8 --chunks 100
import * as http from 'node:http';
import { Command } from 'commander';

export interface LoadOptions { url: string; sessions: number; chunks: number; statsEveryMs?: number; baseline?: boolean }

interface SessionRun { chunkMs: number[]; gapsMs: number[]; chunks: number; errors: string[]; checksums: Array<{ sum: number; sumSq: number }> }

function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

function getJson(url: string): Promise<any> {  // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

/** One session: GET /session?chunks=N, parsing `event:` / `data:` blocks of the SSE stream. */
export function runSessionClient(base: string, chunks: number): Promise<SessionRun> {
  const run: SessionRun = { chunkMs: [], gapsMs: [], chunks: 0, errors: [], checksums: [] };
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
            const r = JSON.parse(data) as { ms: number; checksum: { sum: number; sumSq: number } };
            run.chunkMs.push(r.ms);
            run.gapsMs.push(Number(now - last) / 1e6);
            run.checksums.push(r.checksum);
            last = now;
            run.chunks++;
          } else if (ev === 'start') {
            last = process.hrtime.bigint();
          } else if (ev === 'error') {
            run.errors.push(data ?? 'error event');
          }
        }
      });
      res.on('end', () => resolve(run));
      res.on('error', (e) => { run.errors.push(e.message); resolve(run); });
    });
    req.on('error', (e) => { run.errors.push(e.message); resolve(run); });
  });
}

async function phase(o: LoadOptions, sessions: number) {
  const samples: Array<{ tMs: number; rss: number; heapUsed: number; external: number; arrayBuffers: number; cacheBytesHeld: number; active: number }> = [];
  await getJson(`${o.url}/stats?reset=1`);
  const t0 = process.hrtime.bigint();
  const sample = async (): Promise<void> => {
    const s = await getJson(`${o.url}/stats`);
    samples.push({ tMs: Number(process.hrtime.bigint() - t0) / 1e6, rss: s.memory.rss, heapUsed: s.memory.heapUsed, external: s.memory.external,
      arrayBuffers: s.memory.arrayBuffers, cacheBytesHeld: s.cacheBytes.held, active: s.sessions.active });
  };
  const timer = setInterval(() => { void sample().catch(() => undefined); }, o.statsEveryMs ?? 1000);
  const runs = await Promise.all(Array.from({ length: sessions }, () => runSessionClient(o.url, o.chunks)));
  clearInterval(timer);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const stats = await getJson(`${o.url}/stats`);
  await sample();
  const chunkMs = runs.flatMap((r) => r.chunkMs), gaps = runs.flatMap((r) => r.gapsMs);
  const chunks = runs.reduce((s, r) => s + r.chunks, 0);
  const p50 = quantile(chunkMs, 0.5), p99 = quantile(chunkMs, 0.99);
  return {
    sessions, chunksPerSession: o.chunks, chunks, wallS, chunksPerS: chunks / wallS,
    chunkMs: { p50, p99, max: quantile(chunkMs, 1), p99OverP50: p50 && p99 ? p99 / p50 : null },
    clientGapMs: { p50: quantile(gaps, 0.5), p99: quantile(gaps, 0.99) },
    perSessionChunks: runs.map((r) => r.chunks),
    eventLoopDelayMs: stats.eventLoopDelayMs,
    memory: { samples, rssGrowthBytes: samples.length ? samples[samples.length - 1].rss - samples[0].rss : 0, cacheBytes: stats.cacheBytes },
    // Sessions run the same stand-in inputs, so every session's checksums must agree.
    checksumsAgree: runs.every((r) => JSON.stringify(r.checksums) === JSON.stringify(runs[0].checksums)),
    errors: runs.flatMap((r) => r.errors),
  };
}

export async function runLoad(o: LoadOptions) {
  const baseline = o.baseline === false ? null : await phase(o, 1);
  const load = await phase(o, o.sessions);
  return {
    url: o.url, server: await getJson(`${o.url}/stats`).then((s) => s.sessions),
    baseline, load,
    aggregateVsBaseline: baseline ? load.chunksPerS / baseline.chunksPerS : null,
    errors: (baseline?.errors.length ?? 0) + load.errors.length,
  };
}

if (require.main === module) {
  const o = new Command('load')
    .requiredOption('--url <url>', 'server base URL, e.g. http://127.0.0.1:8080')
    .option('--sessions <n>', 'concurrent sessions', (v) => Number(v), 8)
    .option('--chunks <n>', 'chunks per session', (v) => Number(v), 100)
    .option('--stats-every <ms>', 'memory sampling period', (v) => Number(v), 1000)
    .option('--no-baseline', 'skip the single-session baseline')
    .parse().opts();
  runLoad({ url: o.url, sessions: o.sessions, chunks: o.chunks, statsEveryMs: o.statsEvery, baseline: o.baseline })
    .then((r) => { process.stdout.write(`${JSON.stringify(r, null, 2)}\n`); process.exit(r.errors ? 1 : 0); })
    .catch((e: Error) => { process.stderr.write(`load: ${e.message}\n`); process.exit(2); });
}
