// The example streaming server (examples/streaming-server) on 127.0.0.1, an ephemeral port, tiny shapes,
// the CPU backend: one session's SSE stream (start, a chunk event per chunk, end; a second session on the
// reused pool gives the same checksums), bad requests, busy (503), then a bounded load.
import * as http from 'node:http';
import * as net from 'node:net';
import { resolveConfig } from '../examples/streaming-server/config';
import { runLoad } from '../examples/streaming-server/load';
import { startServer, type RunningServer } from '../examples/streaming-server/server';

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function post(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function events(body: string): Array<{ event: string; data: any }> {  // eslint-disable-line @typescript-eslint/no-explicit-any
  return body.split('\n\n').filter((b) => b.trim()).map((b) => ({
    event: /^event: (.*)$/m.exec(b)![1], data: JSON.parse(/^data: (.*)$/m.exec(b)![1]),
  }));
}

describe('streaming server (CPU, tiny shapes)', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startServer(resolveConfig('tiny', { port: 0, maxSessions: 2 }));
  });
  afterAll(async () => {
    await s.close();
  });

  test('a session streams start, one chunk event per chunk, end; a rolling window runs past layout.frames', async () => {
    const r = await get(`${s.url}/session?chunks=5`);
    expect(r.status).toBe(200);
    const ev = events(r.body);
    expect(ev.map((e) => e.event)).toEqual(['start', 'chunk', 'chunk', 'chunk', 'chunk', 'chunk', 'end']);
    expect(ev[0].data).toMatchObject({ backend: 'cpu', layers: 2, passes: 4, chunkFrames: 2, chunkTokens: 12 });
    const chunks = ev.slice(1, 6).map((e) => e.data);
    chunks.forEach((c, i) => {
      expect(c.chunk).toBe(i);
      expect(c.frame).toBe(2 * i);
      expect(c.calls).toBe(10);
      expect(c.ms).toBeGreaterThan(0);
      expect(Number.isFinite(c.checksum.sum) && c.checksum.sumSq > 0).toBe(true);
    });
    // window 4 frames with a 2-frame sink: from chunk 2 on, one chunk is evicted per chunk
    expect(chunks.map((c) => c.framesCached)).toEqual([2, 4, 4, 4, 4]);
    expect(chunks.map((c) => c.evictedFrames)).toEqual([0, 0, 2, 4, 6]);
    expect(ev[6].data).toMatchObject({ chunks: 5, aborted: false });
    // the same session again reuses the pool and gives the same checksums
    const again = events((await get(`${s.url}/session?chunks=5`)).body).slice(1, 6).map((e) => e.data.checksum);
    expect(again).toEqual(chunks.map((c) => c.checksum));
  });

  test('bad requests get JSON errors and the server stays up', async () => {
    expect((await get(`${s.url}/session?chunks=0`)).status).toBe(400);
    expect((await get(`${s.url}/session?chunks=abc`)).body).toMatch(/chunks must be an integer in 1\.\.10000/);
    expect((await get(`${s.url}/nope`)).status).toBe(404);
    expect(JSON.parse((await get(`${s.url}/health`)).body)).toEqual({ ok: true });
  });

  test('hostile request targets and loose numbers get 400, never a crash', async () => {
    // Raw request lines Node's parser accepts but `new URL` rejects (the server used to throw and exit).
    const raw = (target: string): Promise<string> => new Promise((resolve, reject) => {
      const u = new URL(s.url);
      const sock = net.connect(Number(u.port), u.hostname, () => sock.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      let data = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => { data += d; });
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    for (const target of ['http://[::1', '//[', 'http://a:99999/health', '//a@:/']) {
      expect(await raw(target)).toMatch(/^HTTP\/1\.1 400/);
    }
    for (const v of ['', '%20', '0x10', '1e3', '1.0', '-1']) {
      expect((await post(`${s.url}/scheduler?inflight=${v}`)).status).toBe(400);
      expect((await get(`${s.url}/session?chunks=${v}`)).status).toBe(400);
    }
    expect((await get(`${s.url}/profile?iters=201`)).status).toBe(400);
    expect(JSON.parse((await get(`${s.url}/health`)).body)).toEqual({ ok: true });
  });

  test('more sessions than maxSessions: the extra ones get 503, the others complete', async () => {
    const rs = await Promise.all([1, 2, 3].map(() => get(`${s.url}/session?chunks=40`)));
    const codes = rs.map((r) => r.status).sort();
    expect(codes).toEqual([200, 200, 503]);
    for (const r of rs.filter((x) => x.status === 200)) expect(events(r.body).filter((e) => e.event === 'chunk')).toHaveLength(40);
  });

  test('bounded load: 2 concurrent sessions × 6 chunks, no errors, agreeing checksums, stats sampled', async () => {
    const r = await runLoad({ url: s.url, sessions: 2, chunks: 6, statsEveryMs: 20 });
    expect(r.errors).toBe(0);
    expect(r.load.chunks).toBe(12);
    expect(r.load.perSessionChunks).toEqual([6, 6]);
    expect(r.load.checksumsAgree).toBe(true);
    expect(r.baseline!.chunks).toBe(6);
    expect(r.load.chunkMs.p50).toBeGreaterThan(0);
    expect(r.load.chunkMs.p99).toBeGreaterThanOrEqual(r.load.chunkMs.p50!);
    expect(r.load.eventLoopDelayMs.p99).toBeGreaterThanOrEqual(0);
    expect(r.load.memory.samples.length).toBeGreaterThan(0);
    expect(r.load.memory.cacheBytes.held).toBe(2 * s.poolBytes);
    expect(r.server.sessions.failed).toBe(0);
    expect(r.load.steadyChunkMs.framesCached).toBe(4);
    expect(r.load.fairness.perSessionMeanMs).toHaveLength(2);
    expect(r.targets.errors.pass).toBe(true);
  });

  test('the gate limit can be changed at run time (POST /scheduler); bad values get 400', async () => {
    expect((await post(`${s.url}/scheduler?inflight=abc`)).status).toBe(400);
    expect((await post(`${s.url}/scheduler?inflight=-1`)).body).toMatch(/inflight must be an integer in 0\.\.1024/);
    expect((await get(`${s.url}/scheduler?inflight=1`)).status).toBe(405);
    expect(JSON.parse((await post(`${s.url}/scheduler?inflight=1`)).body)).toEqual({ inflight: 1, depth: 2 });
    const r = await runLoad({ url: s.url, sessions: 2, chunks: 4, baseline: false });
    expect(r.errors).toBe(0);
    expect(r.load.gate.limit).toBe(1);
    expect(r.load.gate.calls).toBe(2 * 4 * 10);
    expect(r.load.checksumsAgree).toBe(true);
    expect(JSON.parse((await post(`${s.url}/scheduler?inflight=4`)).body)).toEqual({ inflight: 4, depth: 2 });
    // the enqueue depth too; both values are checked before either is applied
    expect((await post(`${s.url}/scheduler`)).body).toMatch(/needs inflight=N and\/or depth=M/);
    for (const v of ['0', '65', 'x', '']) expect((await post(`${s.url}/scheduler?depth=${v}`)).body).toMatch(/enqueueDepth must be an integer in 1\.\.64/);
    expect((await post(`${s.url}/scheduler?inflight=2&depth=0`)).status).toBe(400);
    expect(JSON.parse((await post(`${s.url}/scheduler?depth=1`)).body)).toEqual({ inflight: 4, depth: 1 });
    expect(JSON.parse((await post(`${s.url}/scheduler?inflight=3&depth=2`)).body)).toEqual({ inflight: 3, depth: 2 });
    expect(JSON.parse((await post(`${s.url}/scheduler?inflight=4`)).body)).toEqual({ inflight: 4, depth: 2 });
  });

  test('GET /profile: kernel vs protocol time of a full-cache chunk and a whole video; 409 while a session runs', async () => {
    // Process-wide counters: other suites in this jest process (CUDA ones on a GPU machine) may hold
    // device memory; the CPU server itself must add none.
    const before = JSON.parse((await get(`${s.url}/stats`)).body);
    const p = JSON.parse((await get(`${s.url}/profile?repeats=3&iters=5`)).body);
    expect(p).toMatchObject({ backend: 'cpu', layers: 2, passes: 4, callsPerChunk: 10, chunkFrames: 2, keyFrames: 4 });
    expect(p.kernel.msPerCall).toBeGreaterThan(0);
    expect(p.kernel.msPerChunk).toBeCloseTo(10 * p.kernel.msPerCall, 9);
    expect(p.protocol.msPerCall).toBeCloseTo(p.protocol.chunkMs / 10, 9);
    expect(p.roll.evicts).toBe(true);
    expect(p.video).toMatchObject({ frames: 4, chunks: 2 });
    expect(p.video.chunkMs).toHaveLength(2);
    expect(p.video.latentFramesPerSecond).toBeCloseTo(4 / (p.video.ms / 1e3), 6);
    expect((await get(`${s.url}/profile?repeats=0`)).status).toBe(400);
    // A session holds the GPU: profiling is refused until it ends (the client goes away: it stops).
    const busy = await new Promise<number>((resolve, reject) => {
      const req = http.get(`${s.url}/session?chunks=10000`, (res) => {
        res.once('data', () => {
          get(`${s.url}/profile`).then((r) => { req.destroy(); resolve(r.status); }, reject);
        });
      });
      req.on('error', () => undefined);
    });
    expect(busy).toBe(409);
    for (let i = 0; i < 200; i++) {
      const st = JSON.parse((await get(`${s.url}/stats`)).body);
      if (st.sessions.active === 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = JSON.parse((await get(`${s.url}/stats`)).body);
    expect(after.sessions.active).toBe(0);
    expect(after.native.deviceBytes).toBe(before.native.deviceBytes);  // CPU backend: no device memory of its own
  });

  test('long phase: memory sampled while every session runs, flatness and targets reported', async () => {
    const r = await runLoad({ url: s.url, sessions: 2, chunks: 3, baseline: true, profile: { repeats: 2, iters: 3 }, longSessions: 2, longChunks: 60, statsEveryMs: 5 });
    expect(r.errors).toBe(0);
    expect(r.long!.chunks).toBe(120);
    expect(r.long!.checksumsAgree).toBe(true);
    const f = r.long!.memory.flatness;
    expect(f.samples).toBeGreaterThanOrEqual(2);
    expect(f.deviceFlat).toBe(true);  // no device memory on the CPU backend: 0 throughout
    expect(f.rss!.max).toBeGreaterThanOrEqual(f.rss!.first);
    expect(r.overhead!.kernelMsPerChunk).toBeCloseTo(10 * r.profile!.kernel.msPerCall, 9);
    expect(r.overhead!.serverChunkMs).toBe(r.baseline!.steadyChunkMs.p50);
    expect(Object.keys(r.targets).sort()).toEqual(['aggregateVsBaseline', 'checksumsAgree', 'errors', 'eventLoopDelayP99Ms', 'memoryFlat',
      'p99OverP50', 'protocolAndServerOverhead', 'protocolOverhead']);
    expect(r.targets.checksumsAgree.pass).toBe(true);
  });
});

test('preallocate: every pool exists at start-up and sessions reuse them (no allocation while serving)', async () => {
  const s = await startServer(resolveConfig('tiny', { port: 0, maxSessions: 3, preallocate: true, inflight: 2 }));
  try {
    const before = JSON.parse((await get(`${s.url}/stats`)).body);
    expect(before.sessions).toMatchObject({ live: 3, pooled: 3, active: 0 });
    expect(before.standIn.workers).toBe(false);  // from the TypeScript sources: generated inline
    expect((await runLoad({ url: s.url, sessions: 3, chunks: 5, baseline: false })).errors).toBe(0);
    const warm = JSON.parse((await get(`${s.url}/stats`)).body);  // each pool's first calls made its staging
    expect((await runLoad({ url: s.url, sessions: 3, chunks: 5, baseline: false })).errors).toBe(0);
    const after = JSON.parse((await get(`${s.url}/stats`)).body);
    expect(after.sessions).toMatchObject({ live: 3, pooled: 3, completed: 6 });
    expect(after.cacheBytes.held).toBe(3 * s.poolBytes);
    expect(after.native.hostAllocations).toBe(warm.native.hostAllocations);  // steady state: nothing allocated
    expect(after.native.hostBytes).toBe(warm.native.hostBytes);
  } finally {
    await s.close();
  }
});

test('cache calls enqueued (enqueueAttend + one flush per group) give the awaited loop\'s checksums; /profile compares both modes', async () => {
  const awaited = await startServer(resolveConfig('tiny', { port: 0, maxSessions: 1, cacheCalls: 'await' }));
  const enq = await startServer(resolveConfig('tiny', { port: 0, maxSessions: 1, cacheCalls: 'enqueue', enqueueGroup: 3 }));
  try {
    const a = events((await get(`${awaited.url}/session?chunks=5`)).body);
    const e = events((await get(`${enq.url}/session?chunks=5`)).body);
    expect(a[0].data).toMatchObject({ cacheCalls: 'await' });
    expect(e[0].data).toMatchObject({ cacheCalls: 'enqueue', enqueueGroup: 3 });
    const sums = (ev: typeof a) => ev.filter((x) => x.event === 'chunk').map((x) => x.data.checksum);
    expect(sums(e)).toHaveLength(5);
    expect(sums(e)).toEqual(sums(a));
    expect(e.filter((x) => x.event === 'chunk').every((x) => x.data.enqueueMs > 0)).toBe(true);
    expect(a.filter((x) => x.event === 'chunk').every((x) => x.data.enqueueMs === 0)).toBe(true);
    // 10 calls per chunk in groups of 3: 4 gate turns per chunk
    const st = JSON.parse((await get(`${enq.url}/stats?reset=1`)).body);
    expect(st.cacheCalls).toEqual({ mode: 'enqueue', enqueueGroup: 3, enqueueDepth: 2 });
    await get(`${enq.url}/session?chunks=2`);
    expect(JSON.parse((await get(`${enq.url}/stats`)).body).gate.calls).toBe(2 * 4);
    const p = JSON.parse((await get(`${enq.url}/profile?repeats=2&iters=3`)).body);
    expect(p.protocol.mode).toBe('enqueue');
    expect(Object.keys(p.modes).sort()).toEqual(['await', 'enqueue']);
    expect(p.protocol.chunkMs).toBe(p.modes.enqueue.chunkMs);
    expect(p.modes.enqueue.mainThreadMsPerCall).toBeGreaterThan(0);
    expect(p.modes.await.mainThreadMsPerCall).toBe(0);
    expect(p.modes.enqueue.group).toBe(3);
    expect(p.modes.enqueue.depth).toBe(2);
    expect(Object.keys(p.depths).sort()).toEqual(['1', '2']);
    expect(p.depths['2'].chunkMs).toBe(p.modes.enqueue.chunkMs);
    expect(p.depths['1'].depth).toBe(1);
    const r = await runLoad({ url: enq.url, sessions: 1, chunks: 2, profile: { repeats: 2, iters: 3 } });
    expect(r.errors).toBe(0);
    expect(r.overhead!.mode).toBe('enqueue');
    expect(Object.keys(r.overhead!.byMode).sort()).toEqual(['await', 'enqueue']);
    expect(Object.keys(r.overhead!.byDepth).sort()).toEqual(['1', '2']);
    expect(r.targets.protocolOverhead.value).toBe(r.profile!.protocol.overhead);
  } finally {
    await awaited.close();
    await enq.close();
  }
  expect(() => resolveConfig('tiny', { cacheCalls: 'later' as never })).toThrow(/cacheCalls must be 'auto', 'await' or 'enqueue'/);
  expect(() => resolveConfig('tiny', { enqueueGroup: 0 })).toThrow(/enqueueGroup must be an integer in 1\.\.4096/);
  expect(() => resolveConfig('tiny', { enqueueDepth: 0 })).toThrow(/enqueueDepth must be an integer in 1\.\.64/);
  expect(() => resolveConfig('tiny', { enqueueDepth: 1.5 })).toThrow(/enqueueDepth must be an integer in 1\.\.64/);
});

test('pipelined enqueue (depth 1, 2, 4; groups of 3 and 7; a gate of 1 and none) gives the awaited loop\'s checksums', async () => {
  const awaited = await startServer(resolveConfig('tiny', { port: 0, maxSessions: 1, cacheCalls: 'await' }));
  const servers = await Promise.all([
    { enqueueDepth: 1, enqueueGroup: 3 }, { enqueueDepth: 2, enqueueGroup: 3, inflight: 1 }, { enqueueDepth: 4, enqueueGroup: 7, inflight: 0 },
  ].map((o) => startServer(resolveConfig('tiny', { port: 0, maxSessions: 2, cacheCalls: 'enqueue', ...o }))));
  try {
    const sums = (body: string) => events(body).filter((x) => x.event === 'chunk').map((x) => x.data.checksum);
    const want = sums((await get(`${awaited.url}/session?chunks=6`)).body);
    expect(want).toHaveLength(6);
    for (const srv of servers) {
      const ev = events((await get(`${srv.url}/session?chunks=6`)).body);
      expect(ev[0].data).toMatchObject({ cacheCalls: 'enqueue', enqueueDepth: srv.config.enqueueDepth, enqueueGroup: srv.config.enqueueGroup });
      expect(ev.filter((x) => x.event === 'chunk').map((x) => x.data.checksum)).toEqual(want);
      expect(sums((await get(`${srv.url}/session?chunks=6`)).body)).toEqual(want);  // a reused pool too
      // two concurrent sessions through the gate: the same checksums, every turn counted
      await get(`${srv.url}/stats?reset=1`);
      const r = await runLoad({ url: srv.url, sessions: 2, chunks: 4, baseline: false });
      expect(r.errors).toBe(0);
      expect(r.load.checksumsAgree).toBe(true);
      expect(r.load.gate.calls).toBe(2 * 4 * Math.ceil(10 / srv.config.enqueueGroup));
    }
  } finally {
    await awaited.close();
    for (const srv of servers) await srv.close();
  }
});
