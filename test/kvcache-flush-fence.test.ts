// KVCachePool.flush() as a fence (CUDA code path on the native doubles of benchmarks/enqueue_cost.ts, no
// GPU): a flush covers the calls enqueued before it and resolves once the "GPU" has run them, however many
// calls were enqueued after it; flushes settle in call order; a fault fails the flushes covering it (naming
// their own calls) and not an earlier one; an abort still waits for its own calls; close() with flushes
// pending frees after the last. The streaming server's pipelined loop (session.ts runChunk, depth d)
// keeps at most d groups in flight per session, and the fair gate still alternates sessions.
// GPU cases: test/cuda-kvcache-enqueue.test.ts.
import { fakeCudaPool, fakeDeviceTensor, withFakeCuda, type FakeCudaLog } from '../benchmarks/enqueue_cost';
import { FairGate } from '../examples/streaming-server/gate';
import { runChunk, type SessionContext } from '../examples/streaming-server/session';
import type { KVCachePool, MonarchOptions } from './helpers/pkg';

const opts: MonarchOptions = {
  layout: { kind: 'video', frames: 6, height: 2, width: 4, wReduce: 2 }, heads: 2, headDim: 64, dtype: 'bfloat16', numIters: 2,
  causal: { chunkFrames: 2 },
};
const shape = [1, 16, 2, 64];
const tensors = () => [0, 1, 2, 3].map(() => fakeDeviceTensor(shape, 'bfloat16'));
/** Lets every settled Promise run its continuations. */
const ticks = () => new Promise((r) => setImmediate(r));

/** Settlement state of a Promise, readable synchronously. */
function track<T>(p: Promise<T>): { readonly state: 'pending' | 'resolved' | 'rejected'; readonly error: Error | null } {
  const s = { state: 'pending' as 'pending' | 'resolved' | 'rejected', error: null as Error | null };
  p.then(() => { s.state = 'resolved'; }, (e: Error) => { s.state = 'rejected'; s.error = e; });
  return s;
}

describe('flush() is a fence: it waits for the calls before it, not after it (native doubles)', () => {
  test('a flush resolves once its own calls have run while later calls and flushes are pending; flushes settle in call order', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 2 });
      const [q, k, v, out] = tensors();
      const call = (l: number, frame: number) => pool.layers[l].enqueueAttend(q, { frame, write: { k, v }, out });
      call(0, 0); call(1, 0);
      const atA = log.seq;
      const order: string[] = [];
      const fA = pool.flush().then(() => { order.push('A'); });
      const a = track(fA);
      call(0, 2); call(1, 2);  // enqueued while A's flush waits
      const atB = log.seq;
      const b = track(pool.flush().then(() => { order.push('B'); }));
      expect(log.pendingFences).toEqual([atA, atB]);  // one fence per flush, each at its own point of the stream
      expect(log.synchronizeAsync).toBe(0);  // no whole-stream wait
      await ticks();
      expect([a.state, b.state]).toEqual(['pending', 'pending']);
      log.complete(atA + 1);  // the "GPU" has run A's ops and one of B's
      await ticks();
      expect([a.state, b.state]).toEqual(['resolved', 'pending']);
      // while B waits: more calls may be enqueued; awaited calls and reset() still refuse
      call(0, 4);
      await expect(pool.layers[1].attend(q, { frame: 2 })).rejects.toThrow(/\(1 not flushed, 1 flushes pending\)/);
      expect(() => pool.reset()).toThrow(/enqueued calls in flight/);
      // a flush with no call of its own since the last one covers the same point: it settles with it
      const atC = log.seq;
      const c = track(pool.flush().then(() => { order.push('C'); }));
      const d = track(pool.flush().then(() => { order.push('D'); }));
      expect(log.pendingFences).toEqual([atB, atC, atC]);
      log.complete(atB);
      await ticks();
      expect([b.state, c.state, d.state]).toEqual(['resolved', 'pending', 'pending']);
      log.complete();
      await ticks();
      expect([c.state, d.state]).toEqual(['resolved', 'resolved']);
      expect(order).toEqual(['A', 'B', 'C', 'D']);
      expect(log.fences).toBe(4);
      pool.reset();  // every flush settled
      pool.dispose();
    });
  });

  test('a fault fails the flushes that cover it, naming their own calls; an earlier flush resolves; reset() clears the failure', async () => {
    await withFakeCuda(async (log: FakeCudaLog) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 3 });
      const [q, k, v, out] = tensors();
      pool.layers[2].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const atA = log.seq;
      const a = track(pool.flush());
      pool.layers[0].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      pool.layers[1].enqueueWrite(k, v, { frame: 0 });
      const b = track(pool.flush());
      pool.layers[2].enqueueAttend(q, { frame: 2, write: { k, v }, out });
      const c = track(pool.flush());
      log.fault = { at: atA + 1, error: new Error('fenceAsync: cudaEventSynchronize failed: an illegal memory access was encountered') };
      log.complete();
      await ticks();
      expect(a.state).toBe('resolved');
      expect(b.state).toBe('rejected');
      expect(b.error!.message).toBe('KVCachePool.flush: the GPU work of 2 enqueued calls, layer 0 attend at frame 0 … layer 1 write at frame 0 failed: fenceAsync: cudaEventSynchronize failed: an illegal memory access was encountered');
      // the error is sticky (as a CUDA context's): the next flush fails too, naming its own call
      expect(c.error!.message).toMatch(/^KVCachePool\.flush: the GPU work of 1 enqueued call: layer 2 attend at frame 2 failed: fenceAsync/);
      for (const l of [0, 1, 2]) expect(() => pool.layers[l].enqueueWrite(k, v, { frame: 0 })).toThrow(/^KVCache is unusable after a failed call/);
      log.fault = null;
      pool.reset();
      pool.layers[2].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const again = pool.flush();
      log.complete();
      await expect(again).resolves.toBeUndefined();
      pool.dispose();
    });
  });

  test('a layer with calls only before the fault stays usable', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 2 });
      const [q, k, v, out] = tensors();
      pool.layers[1].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const atA = log.seq;
      const a = track(pool.flush());
      pool.layers[0].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const b = track(pool.flush());
      log.fault = { at: atA, error: new Error('fenceAsync: boom') };
      log.complete();
      await ticks();
      expect([a.state, b.state]).toEqual(['resolved', 'rejected']);
      expect(() => pool.layers[0].enqueueWrite(k, v, { frame: 2 })).toThrow(/unusable/);
      expect(() => pool.layers[1].enqueueWrite(k, v, { frame: 2 })).not.toThrow();
      log.fault = null;
      const c = pool.flush();
      log.complete();
      await c;
      pool.dispose();
    });
  });

  test('abort: an aborted flush still waits for its own calls, then rejects; a later flush is unaffected', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 1 });
      const [q, k, v, out] = tensors();
      const ac = new AbortController();
      pool.layers[0].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const atA = log.seq;
      const a = track(pool.flush({ signal: ac.signal }));
      pool.layers[0].enqueueAttend(q, { frame: 2, write: { k, v }, out });
      const b = track(pool.flush());
      ac.abort(new Error('client went away'));
      await ticks();
      expect(a.state).toBe('pending');  // enqueued GPU work cannot be recalled: it waits for it
      log.complete(atA);
      await ticks();
      expect(a.state).toBe('rejected');
      expect(a.error!.name).toBe('AbortError');
      expect(b.state).toBe('pending');
      log.complete();
      await ticks();
      expect(b.state).toBe('resolved');
      expect(pool.layers[0].nextFrame).toBe(4);
      pool.reset();
      pool.dispose();
    });
  });

  test('close() with flushes pending: new calls refused at once, the flushes settle, the plan is freed after the last', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 2 });
      const [q, k, v, out] = tensors();
      pool.layers[0].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const atA = log.seq;
      const a = track(pool.flush());
      pool.layers[1].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const b = track(pool.flush());
      const closed = track(pool.close());
      expect(pool.disposed).toBe(true);
      expect(() => pool.layers[0].enqueueAttend(q, { frame: 2, out })).toThrow(/^KVCache was disposed \(its KVCachePool was disposed\)$/);
      await expect(pool.flush()).rejects.toThrow(/KVCache was disposed/);
      log.complete(atA);
      await ticks();
      expect([a.state, b.state, closed.state]).toEqual(['resolved', 'pending', 'pending']);
      log.complete();
      await ticks();
      expect([b.state, closed.state]).toEqual(['resolved', 'resolved']);
      expect(log.disposedWithFencePending).toBe(false);
      expect(pool.memory.device).toBe(0);
    });
  });
});

describe('the streaming server\'s pipelined chunk loop (session.ts, native doubles)', () => {
  const standIn = (q: unknown, k: unknown, v: unknown) => ({ get: () => ({ q, k, v }) }) as unknown as SessionContext['inputs'];

  for (const depth of [1, 2, 3])
    test(`depth ${depth}: up to ${depth} groups in flight; the next group is enqueued while earlier flushes wait`, async () => {
      await withFakeCuda(async (log) => {
        log.hold = true;
        const pool = fakeCudaPool(opts, { layers: 3 });
        const [q, k, v, out] = tensors();
        const ctx: SessionContext = { inputs: standIn(q, k, v), gate: null, checksums: null as never, mode: 'enqueue', group: 2, depth };
        // 2 passes × 3 layers = 6 calls in 3 groups of 2
        const run = track(runChunk(pool, ctx, 0, 0, 1, out));
        const seen: number[] = [];
        for (let i = 0; i < 10 && run.state === 'pending'; i++) {
          await ticks();
          seen.push(log.pendingFences.length);
          log.complete(log.pendingFences[0]);  // the "GPU" finishes the oldest group
        }
        await ticks();
        expect(run.state).toBe('resolved');
        expect(log.fences).toBe(3);
        expect(Math.max(...seen)).toBe(Math.min(depth, 3));
        expect(pool.layers[2].nextFrame).toBe(2);
        pool.dispose();
      });
    });

  test('two sessions at depth 2 behind a gate of 3: never more than 3 groups in flight, turns alternate between the sessions', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pools: KVCachePool[] = [fakeCudaPool(opts, { layers: 2 }), fakeCudaPool(opts, { layers: 2 })];
      const [q, k, v, out] = tensors();
      const gate = new FairGate(3);
      const ctx: SessionContext = { inputs: standIn(q, k, v), gate, checksums: null as never, mode: 'enqueue', group: 1, depth: 2 };
      // 2 passes × 2 layers = 4 calls = 4 groups per session
      const runs = pools.map((p) => track(runChunk(p, ctx, 0, 0, 1, out)));
      let most = 0;
      for (let i = 0; i < 20 && runs.some((r) => r.state === 'pending'); i++) {
        await ticks();
        most = Math.max(most, log.pendingFences.length);
        log.complete(log.pendingFences[0]);
      }
      await ticks();
      expect(runs.map((r) => r.state)).toEqual(['resolved', 'resolved']);
      expect(most).toBe(3);
      const ids = log.fencePlans.map((id) => id - log.fencePlans[0]);
      expect(ids).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
      expect(gate.stats()).toMatchObject({ calls: 8, inFlight: 0, waiting: 0 });
      pools.forEach((p) => p.dispose());
    });
  });

  test('a failed group: the groups in flight settle first, then the chunk rejects with the first error', async () => {
    await withFakeCuda(async (log) => {
      log.hold = true;
      const pool = fakeCudaPool(opts, { layers: 2 });
      const [q, k, v, out] = tensors();
      const ctx: SessionContext = { inputs: standIn(q, k, v), gate: new FairGate(0), checksums: null as never, mode: 'enqueue', group: 1, depth: 2 };
      const run = track(runChunk(pool, ctx, 0, 0, 1, out));
      await ticks();
      expect(log.pendingFences).toHaveLength(2);
      log.fault = { at: 0, error: new Error('fenceAsync: boom') };
      for (let i = 0; i < 10 && run.state === 'pending'; i++) {
        log.complete();
        await ticks();
      }
      expect(run.state).toBe('rejected');
      expect(run.error!.message).toMatch(/^KVCachePool\.flush: the GPU work of 1 enqueued call: layer 0 attend at frame 0 failed: fenceAsync: boom$/);
      await ticks();
      expect(log.pendingFences).toEqual([]);
      pool.dispose();
      expect(log.disposedWithFencePending).toBe(false);
    });
  });
});
