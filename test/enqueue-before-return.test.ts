// An async call on an idle instance starts its work inside the call, before it returns (docs/API.md
// "Stream interop": on CUDA that is what lets another stream wait on its recordEvent right after the call).
// A stray `await` before the work (it always yields, even on undefined) broke this once and made the GPU
// test of recordEvent read the output before it was written; this pins it on the CPU: runAsync is
// reached synchronously by forward(), denseAttention() and the KV-cache calls, unless the inputs are staged
// in slices (then after the last slice).
import * as ops from '../lib/ops';
import { denseAttention, MonarchAttention } from './helpers/pkg';
import type { HostTensor } from './helpers/pkg';

const H = 2, D = 16;
const rand = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s / 4294967296 - 0.5; });
};
const host = (shape: number[], seed: number): HostTensor => ({ data: rand(shape.reduce((a, b) => a * b, 1), seed), shape, dtype: 'float32' });

describe('async calls start their work before they return (idle instance)', () => {
  let spy: jest.SpyInstance;
  beforeEach(() => { spy = jest.spyOn(ops, 'runAsync'); });
  afterEach(() => spy.mockRestore());

  test('forward()', async () => {
    const S = 64, shape = [1, S, H, D];
    const attn = new MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: 8 }, heads: H, headDim: D, backend: 'cpu' });
    try {
      const p = attn.forward(host(shape, 1), host(shape, 2), host(shape, 3));
      expect(spy).toHaveBeenCalledTimes(1);
      await p;
      // A second call while none is in flight starts at once too.
      const p2 = attn.forward(host(shape, 4), host(shape, 5), host(shape, 6));
      expect(spy).toHaveBeenCalledTimes(2);
      await p2;
    } finally {
      attn.dispose();
    }
  });

  test('forward() with inputs staged in slices starts after the last slice', async () => {
    const S = 1024, shape = [1, S, H, D];  // 128 KiB per input: two slices each
    const attn = new MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: 32 }, heads: H, headDim: D, backend: 'cpu', hostStagingSliceBytes: 65536 });
    try {
      const p = attn.forward(host(shape, 1), host(shape, 2), host(shape, 3));
      expect(spy).not.toHaveBeenCalled();
      await p;
      expect(spy).toHaveBeenCalled();
    } finally {
      attn.dispose();
    }
  });

  test('denseAttention()', async () => {
    const p = denseAttention(host([1, 40, H, D], 7), host([1, 50, H, D], 8), host([1, 50, H, D], 9), { backend: 'cpu' });
    expect(spy).toHaveBeenCalledTimes(1);
    await p;
  });

  test('KVCache.step()', async () => {
    const attn = new MonarchAttention({ layout: { kind: 'video', frames: 4, height: 2, width: 4 }, causal: { chunkFrames: 2 }, heads: H, headDim: D, backend: 'cpu' });
    const cache = attn.createKVCache();
    try {
      const chunk = [1, 2 * 2 * 4, H, D];
      const p = cache.step(host(chunk, 11), host(chunk, 12), host(chunk, 13));
      expect(spy).toHaveBeenCalled();
      await p;
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });
});
