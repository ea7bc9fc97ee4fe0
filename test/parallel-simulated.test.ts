// Sequence parallelism (Ulysses) on the simulated communicator: P = 1, 2, 3, 4, 8 ranks in one process
// (CPU backend) give outputs bit-identical to one MonarchAttention / dense attention over the whole
// sequence — heads are independent (§A.3), so regrouping them changes no reduction order. Covers
// MonarchRT, VMonarch, sequences with padding and key masks, T = 1 and 2, block-causal, BHSD, batch 2,
// bfloat16, uneven head groups (12 heads on 8 ranks), the KV cache; and the error cases: shard shapes,
// divisibility, mismatched options across ranks, a dead rank (timeout), a region past a buffer.
import { createSimulatedGroup, denseAttention, headGroups, MonarchAttention, SequenceParallelAttention } from './helpers/pkg';
import type { HostTensor, SequenceParallelOptions, TensorLayout } from './helpers/pkg';
import { expectBitIdentical } from './helpers/compare';
import { createRanks, joinTokens, parallelForward, shardTokens, sliceTokensOf } from './helpers/parallel';
import { mulberry32 } from './helpers/rng';
import { randAct, toHost } from './helpers/tensors';

function inputs(seed: number, B: number, N: number, H: number, D: number, dtype: HostTensor['dtype'], layout: TensorLayout): HostTensor[] {
  const rng = mulberry32(seed);
  return [2, 1, 1].map((s) => toHost(randAct(rng, B, N, H, D, s, dtype), dtype, layout));
}

function bits(t: HostTensor): ArrayLike<number> {
  return t.dtype === 'float32' ? Float32Array.from(t.data) : Uint16Array.from(t.data);
}

interface Case { name: string; opts: SequenceParallelOptions; N: number; H: number; ranks: number[]; mask?: boolean }

const video = (frames: number, height: number, width: number, extra: object = {}) => ({ kind: 'video' as const, frames, height, width, ...extra });

const cases: Case[] = [
  { name: 'monarchrt 4×4×6 T=1, 12 heads', N: 96, H: 12, ranks: [1, 2, 3, 4, 8], opts: { layout: video(4, 4, 6), heads: 12, headDim: 8 } },
  { name: 'monarchrt 4×4×6 fTied 2 hReduce 2 T=2, 5 heads', N: 96, H: 5, ranks: [2, 3, 4], opts: { layout: video(4, 4, 6, { fTied: 2, hReduce: 2 }), heads: 5, headDim: 8, numIters: 2 } },
  { name: 'vmonarch 4×2×6 T=2, 12 heads', N: 48, H: 12, ranks: [1, 2, 3, 4, 8], opts: { layout: video(4, 2, 6, { factorization: 'vmonarch' }), heads: 12, headDim: 8, numIters: 2 } },
  { name: 'sequence N=120 b=16 (padded) T=2 key mask', N: 120, H: 8, ranks: [1, 2, 3, 4, 8], mask: true, opts: { layout: { kind: 'sequence', length: 120, blockSize: 16 }, heads: 8, headDim: 8, numIters: 2 } },
  { name: 'monarchrt causal 4×4×6 chunks of 2, T=1', N: 96, H: 12, ranks: [2, 3, 8], opts: { layout: video(4, 4, 6), heads: 12, headDim: 8, causal: { chunkFrames: 2 } } },
  { name: 'monarchrt causal 4×4×6 chunks of 2, T=2', N: 96, H: 4, ranks: [2, 4], opts: { layout: video(4, 4, 6), heads: 4, headDim: 8, causal: { chunkFrames: 2 }, numIters: 2 } },
  { name: 'vmonarch causal 6×2×4 chunks of 3, T=2, recompute first-frame', N: 48, H: 3, ranks: [2, 3], opts: { layout: video(6, 2, 4, { factorization: 'vmonarch' }), heads: 3, headDim: 8, causal: { chunkFrames: 3 }, numIters: 2, recompute: 'first-frame' } },
  { name: 'monarchrt 3×4×4 BHSD batch 2', N: 48, H: 6, ranks: [2, 4], opts: { layout: video(3, 4, 4), heads: 6, headDim: 8, batch: 2, tensorLayout: 'BHSD' } },
  { name: 'monarchrt 3×4×4 bfloat16 batch 2', N: 48, H: 12, ranks: [3, 8], opts: { layout: video(3, 4, 4), heads: 12, headDim: 8, batch: 2, dtype: 'bfloat16' } },
  { name: 'dense attention 4×4×6, 12 heads', N: 96, H: 12, ranks: [1, 8], opts: { attention: 'dense', layout: video(4, 4, 6), heads: 12, headDim: 8 } },
  { name: 'dense attention block-causal 4×4×6 chunks of 2, BHSD', N: 96, H: 6, ranks: [3, 4], opts: { attention: 'dense', layout: video(4, 4, 6), heads: 6, headDim: 8, causal: { chunkFrames: 2 }, tensorLayout: 'BHSD' } },
];

async function single(c: Case, q: HostTensor, k: HostTensor, v: HostTensor, keyMask?: Uint8Array): Promise<HostTensor> {
  const { attention, ...opts } = c.opts;
  if (attention === 'dense') {
    const g = opts.causal ? opts.causal.chunkFrames * (opts.layout as { height: number }).height * (opts.layout as { width: number }).width : undefined;
    return (await denseAttention(q, k, v, { backend: 'cpu', tensorLayout: opts.tensorLayout, causalChunk: g })).out;
  }
  const m = new MonarchAttention({ ...opts, backend: 'cpu' });
  try {
    return await m.forward(q, k, v, keyMask ? { keyMask } : undefined);
  } finally {
    m.dispose();
  }
}

describe('SequenceParallelAttention on the simulated communicator: bit-identical to one instance (CPU)', () => {
  for (const c of cases)
    for (const P of c.ranks)
      test(`${c.name}, P=${P}`, async () => {
        const layout = c.opts.tensorLayout ?? 'BSHD', B = c.opts.batch ?? 1, dtype = c.opts.dtype ?? 'float32';
        const [q, k, v] = inputs(1000 * P + c.N + c.H, B, c.N, c.H, 8, dtype, layout);
        let keyMask: Uint8Array | undefined;
        if (c.mask) {
          const rng = mulberry32(77 + P);
          keyMask = Uint8Array.from({ length: B * c.N }, () => (rng.uniform() < 0.8 ? 1 : 0));
        }
        const want = await single(c, q, k, v, keyMask);
        const { sp } = await createRanks(P, { ...c.opts, backend: 'cpu' });
        try {
          expect(sp.map((s) => s.localHeads.count)).toEqual(headGroups(c.H, P).count);
          const got = await parallelForward(sp, q, k, v, layout, keyMask);
          expectBitIdentical(bits(got), bits(want), `${c.name} P=${P}`, got.shape);
          // A second forward on the same instances (reused buffers) gives the same bits.
          const again = await parallelForward(sp, q, k, v, layout, keyMask);
          expectBitIdentical(bits(again), bits(want), `${c.name} P=${P} second forward`, got.shape);
        } finally {
          sp.forEach((s) => s.dispose());
        }
      });
});

describe('head groups and shard helpers', () => {
  test('12 heads on 8 ranks: contiguous, first H mod P ranks get one more', () => {
    expect(headGroups(12, 8)).toEqual({ start: [0, 2, 4, 6, 8, 9, 10, 11], count: [2, 2, 2, 2, 1, 1, 1, 1] });
    expect(headGroups(40, 4).count).toEqual([10, 10, 10, 10]);
  });
  test('shard/join round trip (BSHD, BHSD)', () => {
    for (const layout of ['BSHD', 'BHSD'] as TensorLayout[]) {
      const [q] = inputs(5, 2, 12, 3, 4, 'float32', layout);
      expectBitIdentical(joinTokens(shardTokens(q, layout, 4), layout).data, q.data, layout);
      expect(sliceTokensOf(q, layout, 3, 6).shape).toEqual(layout === 'BSHD' ? [2, 3, 3, 4] : [2, 3, 3, 4]);
    }
  });
});

describe('SequenceParallelKVCache on the simulated communicator (CPU)', () => {
  for (const P of [2, 4, 8])
    test(`monarchrt causal 4×4×6 chunks of 2, 12 heads, P=${P}: step / attend / write equal one KVCache`, async () => {
      const opts = { layout: video(4, 4, 6), heads: 12, headDim: 8, causal: { chunkFrames: 2 }, backend: 'cpu' as const };
      const [q, k, v] = inputs(300 + P, 1, 96, 12, 8, 'float32', 'BSHD');
      const chunk = (t: HostTensor, c: number): HostTensor => sliceTokensOf(t, 'BSHD', c * 48, (c + 1) * 48);
      const m = new MonarchAttention(opts);
      const cache = m.createKVCache();
      const { sp } = await createRanks(P, opts);
      const caches = sp.map((s) => s.createKVCache());
      try {
        for (let c = 0; c < 2; c++) {
          const want = await cache.step(chunk(q, c), chunk(k, c), chunk(v, c)) as HostTensor;
          const [qs, ks, vs] = [q, k, v].map((t) => shardTokens(chunk(t, c), 'BSHD', P));
          const outs = await Promise.all(caches.map((kc, r) => kc.step(qs[r], ks[r], vs[r]))) as HostTensor[];
          expectBitIdentical(joinTokens(outs, 'BSHD').data, want.data, `step chunk ${c}`);
          expect(caches.every((kc) => kc.nextFrame === cache.nextFrame)).toBe(true);
        }
        // Re-attend chunk 1 with a rewrite (a Self-Forcing denoising pass), then a plain attend.
        const frame = 2;
        const want = await cache.attend(chunk(q, 0), { frame, write: { k: chunk(v, 1), v: chunk(k, 1) } }) as HostTensor;
        const [qs, ks, vs] = [chunk(q, 0), chunk(v, 1), chunk(k, 1)].map((t) => shardTokens(t, 'BSHD', P));
        const outs = await Promise.all(caches.map((kc, r) => kc.attend(qs[r], { frame, write: { k: ks[r], v: vs[r] } }))) as HostTensor[];
        expectBitIdentical(joinTokens(outs, 'BSHD').data, want.data, 'attend with write');
        await Promise.all(caches.map((kc, r) => kc.write(vs[r], ks[r], { frame })));
        await cache.write(chunk(k, 1), chunk(v, 1), { frame });
        const want2 = await cache.attend(chunk(q, 1), { frame }) as HostTensor;
        const qs2 = shardTokens(chunk(q, 1), 'BSHD', P);
        await Promise.all(caches.map((kc, r) => kc.write(shardTokens(chunk(k, 1), 'BSHD', P)[r], shardTokens(chunk(v, 1), 'BSHD', P)[r], { frame })));
        const outs2 = await Promise.all(caches.map((kc, r) => kc.attend(qs2[r], { frame }))) as HostTensor[];
        expectBitIdentical(joinTokens(outs2, 'BSHD').data, want2.data, 'attend after write');
      } finally {
        caches.forEach((kc) => kc.dispose());
        sp.forEach((s) => s.dispose());
        cache.dispose();
        m.dispose();
      }
    });
});

describe('SequenceParallelAttention errors', () => {
  const base: SequenceParallelOptions = { layout: video(4, 4, 6), heads: 12, headDim: 8, backend: 'cpu' };

  test('tokens not divisible by the ranks, heads fewer than ranks, not a communicator', async () => {
    await expect(SequenceParallelAttention.create(createSimulatedGroup(5)[0], base))
      .rejects.toThrow(/frames·height·width 4·4·6 = 96 tokens is not divisible by the communicator's 5 ranks/);
    await expect(SequenceParallelAttention.create(createSimulatedGroup(8)[0], { ...base, heads: 4 }))
      .rejects.toThrow(/heads 4 is less than the communicator's 8 ranks/);
    await expect(SequenceParallelAttention.create({} as never, base)).rejects.toThrow(TypeError);
    await expect(SequenceParallelAttention.create(createSimulatedGroup(1)[0], { ...base, attention: 'ring' } as never))
      .rejects.toThrow(/attention "ring" is not one of 'monarch', 'dense'/);
  });

  test('bad shard shapes and kinds name the tensor and the expected size', async () => {
    const { sp } = await createRanks(2, base);
    try {
      const [q, k, v] = inputs(9, 1, 96, 12, 8, 'float32', 'BSHD');
      await expect(sp[0].forward(q, k, v)).rejects.toThrow(/q.shape\[1\]=96 must equal localTokens 48 \(numTokens 96 \/ 2 ranks\)/);
      const [qs, ks, vs] = [q, k, v].map((t) => shardTokens(t, 'BSHD', 2));
      await expect(sp[0].forward(qs[0], ks[0], shardTokens(v, 'BSHD', 4)[0])).rejects.toThrow(/v.shape\[1\]=24 must equal k.shape\[1\]=48/);
      await expect(sp[0].forward(qs[0], ks[0], vs[0], { keyMask: new Uint8Array(48) })).rejects.toThrow(/keyMask/);
    } finally {
      sp.forEach((s) => s.dispose());
    }
  });

  test('ranks created with different options all reject, naming the option', async () => {
    const comms = createSimulatedGroup(3, { timeoutMs: 5000 });
    const results = await Promise.allSettled(comms.map((c, r) => SequenceParallelAttention.create(c, { ...base, numIters: r === 1 ? 2 : 1 })));
    expect(results.every((x) => x.status === 'rejected')).toBe(true);
    for (const x of results) expect((x as PromiseRejectedResult).reason.message).toMatch(/options differ from rank \d's: numIters [12] vs [12]/);
  });

  test('a dead rank makes the others time out, and the communicator stays aborted', async () => {
    const { comms, sp } = await createRanks(3, base, 300);
    try {
      const [q, k, v] = inputs(11, 1, 96, 12, 8, 'float32', 'BSHD');
      const [qs, ks, vs] = [q, k, v].map((t) => shardTokens(t, 'BSHD', 3));
      comms[2].kill();
      const t0 = Date.now();
      const res = await Promise.allSettled([0, 1].map((r) => sp[r].forward(qs[r], ks[r], vs[r])));
      expect(Date.now() - t0).toBeLessThan(5000);
      for (const x of res) {
        expect(x.status).toBe('rejected');
        expect((x as PromiseRejectedResult).reason.message).toMatch(/allToAll #1 timed out after 300 ms on rank [01]: rank 2 did not join \(dead or hung\)/);
      }
      await expect(sp[0].forward(qs[0], ks[0], vs[0])).rejects.toThrow(/communicator of rank 0 was aborted: allToAll #1 timed out/);
      await expect(sp[2].forward(qs[2], ks[2], vs[2])).rejects.toThrow(/was killed/);
    } finally {
      sp.forEach((s) => s.dispose());
    }
  });

  test('disposed instance; allToAll parts past a buffer or with mismatched sizes', async () => {
    const { sp } = await createRanks(1, base);
    sp[0].dispose();
    sp[0].dispose();
    const [q, k, v] = inputs(12, 1, 96, 12, 8, 'float32', 'BSHD');
    await expect(sp[0].forward(q, k, v)).rejects.toThrow(/SequenceParallelAttention was disposed/);

    const [a, b] = createSimulatedGroup(2, { timeoutMs: 2000 });
    const r = (offset: number, bytes: number) => ({ offset, rows: 1, rowBytes: bytes, pitch: bytes });
    const buf = new Uint8Array(16);
    await expect(a.allToAll([{ src: buf, dst: buf, send: [r(0, 8), r(12, 8)], recv: [r(0, 8), r(8, 8)] }]))
      .rejects.toThrow(/parts\[0\].send\[1\] ends at byte 20, past the 16 bytes of parts\[0\].src/);
    const [c, d] = createSimulatedGroup(2, { timeoutMs: 2000 });
    const res = await Promise.allSettled([
      c.allToAll([{ src: new Uint8Array(16), dst: new Uint8Array(16), send: [r(0, 8), r(8, 8)], recv: [r(0, 8), r(8, 8)] }]),
      d.allToAll([{ src: new Uint8Array(16), dst: new Uint8Array(16), send: [r(0, 4), r(8, 8)], recv: [r(0, 8), r(8, 8)] }]),
    ]);
    for (const x of res) expect((x as PromiseRejectedResult).reason.message).toMatch(/rank 1 sends 4 bytes to rank 0, which expects 8 bytes from it/);
    for (const x of [a, b, c, d]) x.dispose();
  });
});
