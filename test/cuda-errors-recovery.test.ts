// CUDA error paths through the public API: an allocation the GPU cannot satisfy becomes a JS Error naming
// "out of GPU memory" (never a crash), nothing is left half-allocated, and the process — and other
// instances — keep working afterwards. Skipped with the reason when no GPU is usable.
import { describeCuda } from './helpers/backend';
import { expectAllFinite } from './helpers/compare';
import { DeviceTensor, MonarchAttention, fromBfloat16, tensor, toBfloat16 } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';

function randBf16(rng: ReturnType<typeof mulberry32>, shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(toBfloat16(Float32Array.from({ length: n }, () => rng.uniform() - 0.5)), shape, 'bfloat16');
}

describeCuda('errors and recovery', () => {
  const small = { layout: { kind: 'video' as const, frames: 3, height: 4, width: 8 }, heads: 2, headDim: 64, dtype: 'bfloat16' as const, backend: 'cuda' as const };

  test('a workspace larger than the GPU throws "out of GPU memory"; a new instance then works', async () => {
    const rng = mulberry32(9100);
    const ok = new MonarchAttention(small);
    // 4096 batches × 21 frames of 30×52 tokens × 12 heads: ~8.7 TB of aL/y workspace.
    // (maxWorkspaceBytes raised past it: the budget check would refuse it first, before any cudaMalloc.)
    expect(() => new MonarchAttention({ ...small, batch: 4096, heads: 12, headDim: 128, maxWorkspaceBytes: 1e15,
      layout: { kind: 'video', frames: 21, height: 30, width: 52 } })).toThrow(/out of GPU memory/);
    expect(() => DeviceTensor.empty([2 ** 44], 'bfloat16')).toThrow(/out of GPU memory/);
    // The instance made before the failures and one made after both still compute finite outputs.
    const after = new MonarchAttention(small);
    const shape = [1, 3 * 4 * 8, 2, 64];
    const [q, k, v] = [randBf16(rng, shape), randBf16(rng, shape), randBf16(rng, shape)];
    for (const attn of [ok, after]) {
      const out = await attn.forward(q, k, v);
      expect(out.shape).toEqual(shape);
      expectAllFinite(fromBfloat16(out.data as Uint16Array), 'out');
    }
    const a = (await ok.forward(q, k, v)).data, b = (await after.forward(q, k, v)).data;
    expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
    ok.dispose(); after.dispose();
  });

  test('a disposed DeviceTensor passed to forward throws, and the instance stays usable', async () => {
    const rng = mulberry32(9101);
    const attn = new MonarchAttention(small);
    const shape = [1, 3 * 4 * 8, 2, 64];
    const [q, k, v] = [randBf16(rng, shape), randBf16(rng, shape), randBf16(rng, shape)].map((t) => DeviceTensor.fromHost(t));
    k.dispose();
    await expect(attn.forward(q, k, v)).rejects.toThrow(/disposed/);
    const k2 = DeviceTensor.fromHost(randBf16(rng, shape));
    const out = await attn.forward(q, k2, v);
    expect(out).toBeInstanceOf(DeviceTensor);
    (out as DeviceTensor).dispose(); q.dispose(); k2.dispose(); v.dispose(); attn.dispose();
  });
});
