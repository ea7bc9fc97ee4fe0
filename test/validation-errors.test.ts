// Every user-caused error is a thrown JS error of the documented class whose message names the option or
// tensor (and dimension) and the value received (docs/API.md "Errors", STYLE.md habit 5).
import { cudaGate } from './helpers/backend';
import { DeviceTensor, MonarchAttention, denseAttentionSync, tensor } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { randAct, toHost } from './helpers/tensors';

const base: MonarchOptions = { layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 2, headDim: 8, backend: 'cpu' };
const make = (o: Partial<MonarchOptions> & Record<string, unknown>): MonarchAttention => new MonarchAttention({ ...base, ...o } as MonarchOptions);

function inputs(B = 1, N = 8, H = 2, D = 8) {
  const rng = mulberry32(95000);
  return [randAct(rng, B, N, H, D), randAct(rng, B, N, H, D), randAct(rng, B, N, H, D)].map((a) => toHost(a));
}

/** Runs fn, expects it to throw an instance of cls whose message matches every pattern. */
function expectError(fn: () => unknown, cls: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, ...patterns: Array<RegExp | string>): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof Error)) throw new Error(`expected a ${cls.name}, nothing was thrown`);
  if (!(err instanceof cls)) throw new Error(`expected a ${cls.name}, got ${err.constructor.name}: ${err.message}`);
  for (const p of patterns) {
    const ok = typeof p === 'string' ? err.message.includes(p) : p.test(err.message);
    if (!ok) throw new Error(`${cls.name} message ${JSON.stringify(err.message)} does not match ${p}`);
  }
}

describe('option kinds → TypeError naming the option', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['heads as a string', { heads: '2' }, /heads/],
    ['headDim null', { headDim: null }, /headDim/],
    ['layout as a string', { layout: 'sequence' }, /layout/],
    ['layout.length as a string', { layout: { kind: 'sequence', length: '8', blockSize: 4 } }, /layout\.length/],
    ['numIters as a string', { numIters: '2' }, /numIters/],
    ['numIters 1.5', { numIters: 1.5 }, /numIters.*1\.5/],
    ['backend as a number', { backend: 3 }, /backend/],
    ['dtype as a number', { dtype: 16 }, /dtype/],
    ['scale as a string', { scale: '0.5' }, /scale/],
    ['threads as a string', { threads: 'all' }, /threads/],
    ['batch as a boolean', { batch: true }, /batch/],
  ];
  test.each(cases)('%s', (_n, o, re) => expectError(() => make(o), TypeError, re));
  test('options missing entirely', () => expectError(() => new MonarchAttention(undefined as never), TypeError, /options|layout/));
});

describe('option values → RangeError naming the option and value', () => {
  const cases: Array<[string, Record<string, unknown>, Array<RegExp | string>]> = [
    ['numIters 0', { numIters: 0 }, [/numIters/, /\b0\b/]],
    ['numIters 17', { numIters: 17 }, [/numIters/, /17/]],
    ['heads 0', { heads: 0 }, [/heads/, /\b0\b/]],
    ['headDim 0', { headDim: 0 }, [/headDim/]],
    ['headDim 600 on the CPU (1..512)', { headDim: 600 }, [/headDim/, /600/]],
    ['blockSize 9 > length 8', { layout: { kind: 'sequence', length: 8, blockSize: 9 } }, [/blockSize/, /9/]],
    ['blockSize 0', { layout: { kind: 'sequence', length: 8, blockSize: 0 } }, [/blockSize/]],
    ['padding "middle"', { layout: { kind: 'sequence', length: 8, blockSize: 4, padding: 'middle' } }, [/padding/, /middle/]],
    ['layout.kind "image"', { layout: { kind: 'image', length: 8 } }, [/layout\.kind/, /image/]],
    ['hReduce 4 does not divide height 30', { layout: { kind: 'video', frames: 1, height: 30, width: 2, hReduce: 4 } }, ['layout.height 30 is not divisible by hReduce 4']],
    ['wReduce 3 does not divide width 4', { layout: { kind: 'video', frames: 1, height: 2, width: 4, wReduce: 3 } }, [/width/, /wReduce/, /3/]],
    ['fTied 2 does not divide frames 3', { layout: { kind: 'video', frames: 3, height: 2, width: 2, fTied: 2 } }, [/frames/, /fTied/]],
    ['chunkFrames 3 does not divide frames 4', { layout: { kind: 'video', frames: 4, height: 2, width: 2 }, causal: { chunkFrames: 3 } }, [/frames/, /chunkFrames/, /3/]],
    ['causal on a sequence', { causal: { chunkFrames: 1 } }, [/causal/]],
    ['recompute first-frame on a sequence', { recompute: 'first-frame' }, [/recompute/]],
    ['scale -1', { scale: -1 }, [/scale/, /-1/]],
    ['tensorLayout "NCHW"', { tensorLayout: 'NCHW' }, [/tensorLayout/, /NCHW/]],
  ];
  test.each(cases)('%s', (_n, o, res) => expectError(() => make(o), RangeError, ...res));
});

describe('tensor facts → errors naming the tensor and dimension', () => {
  test('wrong dtype: q is float16 on a float32 instance', () => {
    const attn = make({});
    const [q, k, v] = inputs();
    const q16 = tensor(new Uint16Array(q.data.length), q.shape, 'float16');
    expectError(() => attn.forwardSync(q16, k, v), TypeError, /\bq\b/, /float16/, /float32/);
    attn.dispose();
  });
  test('wrong rank: q is 3-D', () => {
    const attn = make({});
    const [q, k, v] = inputs();
    const q3 = tensor(q.data as Float32Array, [1, 8, 16]);
    expectError(() => attn.forwardSync(q3, k, v), RangeError, /\bq\.shape\b/, /4/);
    attn.dispose();
  });
  test('k heads ≠ q heads names k.shape[2] and q.shape[2]', () => {
    const attn = make({});
    const [q, , v] = inputs();
    const k = toHost(randAct(mulberry32(1), 1, 8, 1, 8));
    expectError(() => attn.forwardSync(q, k, v), RangeError, 'k.shape[2]=1 must equal q.shape[2]=2');
    attn.dispose();
  });
  test('q tokens ≠ layout length names q.shape[1]', () => {
    const attn = make({});
    const [, k, v] = inputs();
    const q = toHost(randAct(mulberry32(2), 1, 7, 2, 8));
    expectError(() => attn.forwardSync(q, k, v), RangeError, /q\.shape\[1\]=7/);
    attn.dispose();
  });
  test('v head dim ≠ q head dim names v.shape[3]', () => {
    const attn = make({});
    const [q, k] = inputs();
    const v = toHost(randAct(mulberry32(3), 1, 8, 2, 4));
    expectError(() => attn.forwardSync(q, k, v), RangeError, /v\.shape\[3\]=4/);
    attn.dispose();
  });
  test('batch mismatch with the batch option names q.shape[0]', () => {
    const attn = make({ batch: 2 });
    const [q, k, v] = inputs();
    expectError(() => attn.forwardSync(q, k, v), RangeError, /q\.shape\[0\]=1/);
    attn.dispose();
  });
  test('BHSD instance: heads are dim 1', () => {
    const attn = make({ tensorLayout: 'BHSD' });
    const rng = mulberry32(4);
    const q = toHost(randAct(rng, 1, 8, 2, 8), 'float32', 'BHSD');
    const k = toHost(randAct(rng, 1, 8, 3, 8), 'float32', 'BHSD');
    expectError(() => attn.forwardSync(q, k, k), RangeError, /k\.shape\[1\]=3/, /q\.shape\[1\]=2/);
    attn.dispose();
  });
  test('keyMask of the wrong length / kind, and on a video layout', () => {
    const attn = make({});
    const [q, k, v] = inputs();
    expectError(() => attn.forwardSync(q, k, v, { keyMask: new Uint8Array(7) }), RangeError, /keyMask/, /7/);
    expectError(() => attn.forwardSync(q, k, v, { keyMask: [1, 1] as never }), TypeError, /keyMask/);
    attn.dispose();
    const vid = make({ layout: { kind: 'video', frames: 2, height: 2, width: 2 } });
    expectError(() => vid.forwardSync(q, k, v, { keyMask: new Uint8Array(8) }), RangeError, /keyMask/);
    vid.dispose();
  });
  test('tensor(): data kind vs dtype, element count', () => {
    // @ts-expect-error: a compile error too (test/types.test.ts)
    expectError(() => tensor(new Float32Array(4), [4], 'bfloat16'), TypeError, /bfloat16/);
    // @ts-expect-error: a compile error too
    expectError(() => tensor(new Uint16Array(4), [4]), TypeError, /float16|bfloat16/);
    expectError(() => tensor(new Float32Array(5), [2, 2]), RangeError, /5/);
  });
  test('dense: k tokens ≠ v tokens names v.shape[1]', () => {
    const rng = mulberry32(5);
    const q = toHost(randAct(rng, 1, 3, 1, 8)), k = toHost(randAct(rng, 1, 6, 1, 8)), v = toHost(randAct(rng, 1, 5, 1, 8));
    expectError(() => denseAttentionSync(q, k, v, { backend: 'cpu' }), RangeError, /v\.shape\[1\]=5/);
  });
});

describe('lifecycle', () => {
  test('use after dispose throws "MonarchAttention was disposed"; dispose is idempotent', async () => {
    const attn = make({});
    const [q, k, v] = inputs();
    attn.dispose();
    attn.dispose();
    expectError(() => attn.forwardSync(q, k, v), Error, 'MonarchAttention was disposed');
    await expect(attn.forward(q, k, v)).rejects.toThrow('MonarchAttention was disposed');
  });
  test('createKVCache needs causal video; a disposed cache throws "KVCache was disposed"', () => {
    const attn = make({});
    expectError(() => attn.createKVCache(), Error, /createKVCache/);
    attn.dispose();
    const vid = make({ layout: { kind: 'video', frames: 2, height: 2, width: 2 }, causal: { chunkFrames: 1 } });
    const cache = vid.createKVCache();
    cache.dispose();
    const rng = mulberry32(6);
    const t = toHost(randAct(rng, 1, 4, 2, 8));
    expectError(() => cache.stepSync(t, t, t), Error, 'KVCache was disposed');
    vid.dispose();
  });
  test('a KV-cache step with the wrong number of tokens names q.shape[1]', () => {
    const vid = make({ layout: { kind: 'video', frames: 4, height: 2, width: 2 }, causal: { chunkFrames: 2 } });
    const cache = vid.createKVCache();
    const t = toHost(randAct(mulberry32(7), 1, 4, 2, 8)); // one frame, the chunk is two
    expectError(() => cache.stepSync(t, t, t), RangeError, /q\.shape\[1\]=4/);
    cache.dispose();
    vid.dispose();
  });
});

describe('CUDA backend options', () => {
  // dtype and head dim are checked before availability (docs/API.md), so these hold with or without a GPU
  test("unsupported head dim with backend 'cuda' names the value and the supported set", () => {
    expectError(() => make({ backend: 'cuda', headDim: 80, dtype: 'bfloat16' }), RangeError,
      'headDim 80 is not supported by the CUDA backend for bfloat16 (supported: 64, 128; float32: 1..128)');
  });
  test("float32 with backend 'cuda' takes head dims up to 128 and names the limit beyond", () => {
    expectError(() => make({ backend: 'cuda', headDim: 160, dtype: 'float32' }), RangeError,
      'headDim 160 is not supported by the CUDA backend for float32 (supported: 1..128)');
  });
  const gate = cudaGate();
  if (gate.run) {
    test("backend 'cuda' resolves to cuda; 'auto' picks cuda where the kernels take dtype and head dim, else the CPU", () => {
      const cases = [['cuda', 'bfloat16', 64, 'cuda'], ['cuda', 'float32', 40, 'cuda'], ['auto', 'bfloat16', 64, 'cuda'],
        ['auto', 'float32', 64, 'cuda'], ['auto', 'bfloat16', 80, 'cpu'], ['auto', 'float32', 160, 'cpu']] as const;
      for (const [backend, dtype, headDim, want] of cases) {
        const a = make({ backend, dtype, headDim });
        expect(a.backend).toBe(want);
        a.dispose();
      }
    });
  } else {
    test(`backend 'cuda' without a GPU → "CUDA backend unavailable: <reason>" (${gate.reason})`, () => {
      expectError(() => make({ backend: 'cuda', dtype: 'bfloat16', headDim: 64 }), Error, /^CUDA backend unavailable: .+/);
    });
    test('DeviceTensor without a GPU → "CUDA backend unavailable"', () => {
      expectError(() => DeviceTensor.empty([4], 'bfloat16'), Error, /CUDA backend unavailable/);
    });
    test("backend 'auto' falls back to the CPU without a GPU (bf16 too)", () => {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        const attn = make({ backend: 'auto', dtype, headDim: 64 });
        expect(attn.backend).toBe('cpu');
        attn.dispose();
      }
    });
  }
});
