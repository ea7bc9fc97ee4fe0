// The example streaming server (examples/streaming-server) on 127.0.0.1, an ephemeral port, tiny shapes,
// the CPU backend: one session's SSE stream (start, a chunk event per chunk, end; a second session on the
// reused pool gives the same checksums), bad requests, busy (503), then a bounded load.
import * as http from 'node:http';
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
    expect(r.server.failed).toBe(0);
  });
});
