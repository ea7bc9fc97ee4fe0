// No silent garbage (issue 8, item 4): non-finite inputs propagate as NaN to exactly the output rows that
// depend on them (as dense softmax attention does), logits that overflow float32 give NaN rows instead of
// zeros, extreme finite inputs give real results, masked-out keys never leak their NaNs, and a softmax
// scale that does not fit float32 is refused. CPU here; the same cases on CUDA when a GPU is present.
import { DeviceTensor, MonarchAttention, denseAttentionSync, tensor } from './helpers/pkg';
import type { DType, HostTensor, MonarchOptions } from './helpers/pkg';
import { describeCuda } from './helpers/backend';
import { mulberry32 } from './helpers/rng';
import { encode, randAct } from './helpers/tensors';
import { denseRef } from './reference/dense';
import { act } from './helpers/act';
import { expectClose } from './helpers/compare';
import { FP32 } from './helpers/tolerances';

const [N, H, D, b] = [24, 2, 8, 4];  // sequence of 24 tokens in blocks of 4: tile 6 rows × 4 columns
// CUDA's tensor-core kernels (bfloat16 / float16) take head dims 64 and 128 only (include/monarch/support.h).
const D16 = 64;

/** Runs one attention (head dim from q's shape); `scale` overrides the default 1/√D. */
type Run = (q: HostTensor, k: HostTensor, v: HostTensor, scale?: number) => Float32Array;
type Poison = { tensor: 'q' | 'k' | 'v'; token: number; value: number };

function hostInputs(seed: number, dtype: DType, poison?: Poison, fill?: (name: string, x: Float64Array) => void, d = D): HostTensor[] {
  const rng = mulberry32(seed);
  return ['q', 'k', 'v'].map((name) => {
    const x = randAct(rng, 1, N, H, d, 1, dtype).x;
    fill?.(name, x);
    if (poison && poison.tensor === name) x[(poison.token * H + 1) * d + 3] = poison.value;  // head 1, element 3
    return tensor(encode(x, dtype), [1, N, H, d], dtype);
  });
}

function toF32(t: HostTensor): Float32Array {
  if (t.dtype === 'float32') return Float32Array.from(t.data as Float32Array);
  const u = t.data as Uint16Array, out = new Float32Array(u.length);
  const buf = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < u.length; i++) {
    if (t.dtype === 'bfloat16') { buf.setUint32(0, u[i] << 16); out[i] = buf.getFloat32(0); continue; }
    const e = (u[i] >> 10) & 31, m = u[i] & 1023, s = u[i] >> 15 ? -1 : 1;
    out[i] = e === 31 ? (m ? NaN : s * Infinity) : e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** Per output row (token, head) of an output [1][N][H][d]: 'N' NaN, '0' all zeros, '.' finite. */
function rowKinds(o: Float32Array): string[][] {
  const d = o.length / (N * H);
  const rows: string[][] = [];
  for (let t = 0; t < N; t++) {
    rows.push([]);
    for (let h = 0; h < H; h++) {
      const r = o.subarray((t * H + h) * d, (t * H + h + 1) * d);
      rows[t].push(r.some(Number.isNaN) ? 'N' : r.every((x) => x === 0) ? '0' : r.every(Number.isFinite) ? '.' : 'I');
    }
  }
  return rows;
}

/** Expected kinds: NaN for (token, head 1) where `hit(token)`, finite elsewhere. */
function expected(hit: (t: number) => boolean): string[][] {
  return Array.from({ length: N }, (_, t) => ['.', hit(t) ? 'N' : '.']);
}

type DenseStats = (q: HostTensor, k: HostTensor, v: HostTensor, scale?: number) => { out: Float32Array; lse: Float32Array; entropy: Float32Array };

/** Per (head, query) of an lse / entropy [1][H][N]: 'N' NaN, '-' −Infinity, '.' finite. */
function statKinds(x: Float32Array): string[][] {
  return Array.from({ length: N }, (_, t) => Array.from({ length: H }, (_, h) => {
    const v = x[h * N + t];
    return Number.isNaN(v) ? 'N' : v === -Infinity ? '-' : Number.isFinite(v) ? '.' : 'I';
  }));
}

// A −Inf logit of a visible key (a ±Inf key, or a q·k that overflows float32) is non-finite like NaN: the
// row is NaN, never a "masked key" whose row comes out finite (the float32 CUDA row kernels mark masked
// keys with a separate flag, not with −Inf, cuda/common/fp32_rows.cuh; the 16-bit tensor-core kernels map
// a visible key's non-finite logit to NaN or check the smallest raw score, cuda/common/online_softmax.cuh).
// headDim(dtype): the head dim the backend runs that dtype at.
function cases(label: string, runFor: (dtype: DType, kind: 'monarch1' | 'monarch2' | 'dense') => Run, dtypes: DType[], denseStats: DenseStats,
  headDim: (dtype: DType) => number = () => D): void {
  describe(label, () => {
    for (const dtype of dtypes) {
      const d = headDim(dtype);
      const inputs = (seed: number, poison?: Poison, fill?: (name: string, x: Float64Array) => void) =>
        hostInputs(seed, dtype, poison, fill, d) as [HostTensor, HostTensor, HostTensor];
      for (const kind of ['monarch1', 'monarch2', 'dense'] as const) {
        const run = (): Run => runFor(dtype, kind);
        const qHit = (t0: number) => (t: number) => (kind === 'dense' ? t === t0 : t % b === t0 % b);  // same R column j
        test.each([NaN, Infinity, -Infinity])(`${dtype} ${kind}: q token 9 = %s → NaN in exactly the rows it feeds, the rest unchanged`, (value) => {
          const r = run();
          const clean = r(...inputs(501));
          const out = r(...inputs(501, { tensor: 'q', token: 9, value }));
          expect(rowKinds(out)).toEqual(expected(qHit(9)));
          for (let t = 0; t < N; t++) {
            for (let h = 0; h < H; h++) {
              if (h === 1 && qHit(9)(t)) continue;
              const i = (t * H + h) * d;
              expect([t, h, Array.from(out.subarray(i, i + d))]).toEqual([t, h, Array.from(clean.subarray(i, i + d))]);
            }
          }
        });
        test.each([NaN, Infinity, -Infinity])(`${dtype} ${kind}: k token 14 = %s → NaN in every row of that head (all see it)`, (value) => {
          const out = run()(...inputs(502, { tensor: 'k', token: 14, value }));
          expect(rowKinds(out)).toEqual(expected(() => true));
        });
        test(`${dtype} ${kind}: v token 3 = NaN → NaN in every row of that head`, () => {
          const out = run()(...inputs(503, { tensor: 'v', token: 3, value: NaN }));
          expect(rowKinds(out)).toEqual(expected(() => true));
        });
        // float16 cannot hold 1e30 (max 65504): q = +Inf, k = −Inf after rounding, so every q·k is −Inf as well
        // (the overflow proper, for float16 too, is the scale case below).
        test(`${dtype} ${kind}: q = 1e30, k = −1e30 (every logit overflows to −Inf) → NaN rows, never zeros`, () => {
          const big = 1e30;
          const out = run()(...inputs(504, undefined, (name, x) => {
            if (name === 'q') x.fill(big);
            if (name === 'k') x.fill(-big);
          }));
          expect(rowKinds(out).flat().every((c) => c === 'N')).toBe(true);
        });
        // Finite in every dtype (256 is exact in float16), q·k = −65536·D, times the scale 1e35 overflows float32:
        // the only way float16 inputs overflow, since |q·k| ≤ 65504²·128 ≈ 5.5e11 at D ≤ 128.
        test(`${dtype} ${kind}: q = 256, k = −256, scale 1e35 (q·k·scale overflows to −Inf) → NaN rows, never zeros`, () => {
          const out = run()(...inputs(511, undefined, (name, x) => {
            if (name === 'q') x.fill(256);
            if (name === 'k') x.fill(-256);
          }), 1e35);
          expect(rowKinds(out).flat().every((c) => c === 'N')).toBe(true);
        });
      }
      // dense lse / entropy follow the output row: NaN exactly where it is NaN (never a finite entropy of 0)
      test.each([
        ['q token 9 = NaN', { tensor: 'q', token: 9, value: NaN }, (t: number) => t === 9],
        ['q token 9 = -Infinity', { tensor: 'q', token: 9, value: -Infinity }, (t: number) => t === 9],
        ['k token 14 = -Infinity', { tensor: 'k', token: 14, value: -Infinity }, () => true],
        ['k token 14 = Infinity', { tensor: 'k', token: 14, value: Infinity }, () => true],
      ] as Array<[string, Poison, (t: number) => boolean]>)(`${dtype} dense: %s → lse and entropy NaN in exactly the NaN output rows`, (_, poison, hit) => {
        const r = denseStats(...inputs(508, poison));
        expect(rowKinds(r.out)).toEqual(expected(hit));
        expect(statKinds(r.lse)).toEqual(expected(hit));
        expect(statKinds(r.entropy)).toEqual(expected(hit));
      });
      test(`${dtype} dense: every logit overflows to −Inf → out, lse and entropy all NaN`, () => {
        const r = denseStats(...inputs(509, undefined, (name, x) => {
          if (name === 'q') x.fill(1e30);
          if (name === 'k') x.fill(-1e30);
        }));
        expect([rowKinds(r.out), statKinds(r.lse), statKinds(r.entropy)].map((k) => k.flat().every((c) => c === 'N'))).toEqual([true, true, true]);
      });
      // 320 keys: whole key tiles (64 or 128 keys) that no mask touches, where the CUDA dense kernels take their
      // unmasked fast path (a −Inf logit there is caught by the min of the raw scores, dense_softmax.cuh).
      test.each([
        ['k token 200 = -Infinity', (name: string, x: Float64Array) => { if (name === 'k') x[(200 * H + 1) * d + 3] = -Infinity; }],
        ['k token 200 = Infinity', (name: string, x: Float64Array) => { if (name === 'k') x[(200 * H + 1) * d + 3] = Infinity; }],
        ['k token 200 = NaN', (name: string, x: Float64Array) => { if (name === 'k') x[(200 * H + 1) * d + 3] = NaN; }],
        ['head 1: q = 256, k token 200 = -256, scale 1e35', (name: string, x: Float64Array) => {
          for (let t = 0; t < NL; t++) {
            for (let e = 0; e < d; e++) {
              const i = (t * H + 1) * d + e;
              if (name === 'q') x[i] = 256;
              else if (name === 'k' && t === 200) x[i] = -256;
              else if (name === 'k') x[i] = 1 / 256;  // the other logits: 256·(1/256)·D·1e35/√D, finite
            }
          }
        }],
      ] as Array<[string, (name: string, x: Float64Array) => void]>)(`${dtype} dense, 320 keys (unmasked key tiles): %s → head 1 NaN in every row, lse and entropy too; head 0 finite`, (what, fill) => {
        const rng = mulberry32(512);
        const [q, k, v] = ['q', 'k', 'v'].map((name) => {
          const x = randAct(rng, 1, NL, H, d, 1, dtype).x;
          fill(name, x);
          return tensor(encode(x, dtype), [1, NL, H, d], dtype);
        });
        const r = denseStats(q, k, v, what.includes('scale') ? 1e35 : undefined);
        for (let t = 0; t < NL; t++) {
          for (let h = 0; h < H; h++) {
            const row = r.out.subarray((t * H + h) * d, (t * H + h + 1) * d);
            const kinds = [row.some(Number.isNaN), Number.isNaN(r.lse[h * NL + t]), Number.isNaN(r.entropy[h * NL + t])];
            const finite = row.every(Number.isFinite) && Number.isFinite(r.lse[h * NL + t]) && Number.isFinite(r.entropy[h * NL + t]);
            expect([t, h, ...kinds, h === 0 ? finite : true]).toEqual([t, h, h === 1, h === 1, h === 1, true]);
          }
        }
      });
    }
  });
}
const NL = 320;

const seqOpts = (T: number, dtype: DType, backend: 'cpu' | 'cuda', d = D, scale?: number): MonarchOptions =>
  ({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: d, numIters: T, dtype, backend, ...(scale === undefined ? {} : { scale }) });

const cpuRun = (dtype: DType, kind: 'monarch1' | 'monarch2' | 'dense'): Run => (q, k, v, scale) => {
  if (kind === 'dense') return toF32(denseAttentionSync(q, k, v, { backend: 'cpu', scale }).out);
  const attn = new MonarchAttention(seqOpts(kind === 'monarch1' ? 1 : 2, dtype, 'cpu', q.shape[3], scale));
  try {
    return toF32(attn.forwardSync(q, k, v));
  } finally {
    attn.dispose();
  }
};

const cpuStats: DenseStats = (q, k, v, scale) => {
  const r = denseAttentionSync(q, k, v, { backend: 'cpu', returnLse: true, returnEntropy: true, scale });
  return { out: toF32(r.out), lse: toF32(r.lse!), entropy: toF32(r.entropy!) };
};

cases('CPU backend', cpuRun, ['float32', 'bfloat16', 'float16'], cpuStats);

describe('CPU backend: masks, extreme finite inputs, scale', () => {
  test('a NaN key that keyMask masks out never reaches the output (dense and Monarch)', () => {
    const [q, k, v] = hostInputs(505, 'float32', { tensor: 'k', token: 14, value: NaN });
    const mask = new Uint8Array(N).fill(1);
    mask[14] = 0;
    const dense = toF32(denseAttentionSync(q, k, v, { backend: 'cpu', keyMask: mask }).out);
    expect(dense.every(Number.isFinite)).toBe(true);
    const attn = new MonarchAttention(seqOpts(2, 'float32', 'cpu'));
    try {
      const out = toF32(attn.forwardSync(q, k, v, { keyMask: mask }));
      expect(out.every(Number.isFinite)).toBe(true);
    } finally {
      attn.dispose();
    }
  });

  test('q scaled by 1e30 (finite logits ~1e30): dense output is the one-hot softmax of the float64 reference, Monarch finite and non-zero', () => {
    const rng = mulberry32(506);
    const [qa, ka, va] = [0, 1, 2].map(() => randAct(rng, 1, N, H, D));
    const q1 = act(Float64Array.from(qa.x, (x) => Math.fround(x * 1e30)), 1, N, H, D);
    const [q, k, v] = [q1, ka, va].map((a) => tensor(encode(a.x, 'float32') as Float32Array, [1, N, H, D]));
    const ref = denseRef(q1, ka, va).out;
    const out = toF32(denseAttentionSync(q, k, v, { backend: 'cpu' }).out);
    let worst = 0;
    for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i] - ref[i]));
    expect(worst).toBeLessThan(1e-5);  // one-hot rows: out = v of the arg-max key, exactly in fp32
    const attn = new MonarchAttention(seqOpts(2, 'float32', 'cpu'));
    try {
      const o = toF32(attn.forwardSync(q, k, v));
      expect(rowKinds(o).flat().every((c) => c === '.')).toBe(true);
    } finally {
      attn.dispose();
    }
  });

  test('scale that overflows or underflows float32 is a RangeError (MonarchAttention and denseAttention)', () => {
    const base = seqOpts(1, 'float32', 'cpu');
    expect(() => new MonarchAttention({ ...base, scale: 1e39 })).toThrow(/scale 1e\+39 overflows float32/);
    expect(() => new MonarchAttention({ ...base, scale: 1e-39 })).toThrow(/scale 1e-39 underflows float32/);
    const [q, k, v] = hostInputs(507, 'float32');
    expect(() => denseAttentionSync(q, k, v, { scale: 4e38 })).toThrow(RangeError);
    new MonarchAttention({ ...base, scale: 3e38 }).dispose();
  });
});

// The CUDA kernels follow the CPU's non-finite rule: a NaN or ±Inf logit of a visible key makes the row's
// softmax sum NaN, and the kernels keep that NaN (no "empty row" zeros, no masked candidate) through cL,
// lse, aR and the output, in every dtype (the masked-key cases below are float32 only: docs/API.md).
describeCuda('non-finite inputs', () => {
  const cudaRun = (dtype: DType, kind: 'monarch1' | 'monarch2' | 'dense'): Run => (q, k, v, scale) => {
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    try {
      if (kind === 'dense') {
        const o = denseAttentionSync(dev[0], dev[1], dev[2], { backend: 'cuda', scale }).out;
        try { return toF32(o.downloadSync()); } finally { o.dispose(); }
      }
      const attn = new MonarchAttention(seqOpts(kind === 'monarch1' ? 1 : 2, dtype, 'cuda', q.shape[3], scale));
      try {
        const o = attn.forwardSync(dev[0], dev[1], dev[2]);
        try { return toF32(o.downloadSync()); } finally { o.dispose(); }
      } finally {
        attn.dispose();
      }
    } finally {
      dev.forEach((t) => t.dispose());
    }
  };
  const cudaStats: DenseStats = (q, k, v, scale) => {
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    try {
      const r = denseAttentionSync(dev[0], dev[1], dev[2], { backend: 'cuda', returnLse: true, returnEntropy: true, scale });
      try {
        return { out: toF32(r.out.downloadSync()), lse: toF32(r.lse!), entropy: toF32(r.entropy!) };
      } finally {
        r.out.dispose();
      }
    } finally {
      dev.forEach((t) => t.dispose());
    }
  };
  // float32 on the row kernels at D = 8; bfloat16 / float16 on the tensor-core kernels at D = 64 (their
  // smallest head dim). With MONARCH_DENSE_KERNEL=mma the dense cases run the mma.sync kernel on sm_90a too.
  cases('CUDA backend', cudaRun, ['float32', 'bfloat16', 'float16'], cudaStats, (dtype) => (dtype === 'float32' ? D : D16));

  // The other side of the float32 kernels' mask flag: a masked key's NaN / ±Inf never reaches a row.
  test.each([NaN, Infinity, -Infinity])('float32: a key = %s that keyMask masks out never reaches the output; CPU result (dense and Monarch T = 2)', (value) => {
    const [q, k, v] = hostInputs(510, 'float32', { tensor: 'k', token: 14, value });
    const mask = new Uint8Array(N).fill(1);
    mask[14] = 0;
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const attn = new MonarchAttention(seqOpts(2, 'float32', 'cuda'));
    const cpu = new MonarchAttention(seqOpts(2, 'float32', 'cpu'));
    try {
      const dense = denseAttentionSync(dev[0], dev[1], dev[2], { backend: 'cuda', keyMask: mask }).out;
      const mon = attn.forwardSync(dev[0], dev[1], dev[2], { keyMask: mask });
      const got = [dense, mon].map((o) => { try { return toF32(o.downloadSync()); } finally { o.dispose(); } });
      const want = [toF32(denseAttentionSync(q, k, v, { backend: 'cpu', keyMask: mask }).out), toF32(cpu.forwardSync(q, k, v, { keyMask: mask }))];
      for (let i = 0; i < 2; i++) {
        expect(rowKinds(got[i]).flat().every((c) => c === '.')).toBe(true);
        expectClose(got[i], want[i], FP32, `${['dense', 'Monarch'][i]} vs CPU fp32`, [1, N, H, D]);
      }
    } finally {
      attn.dispose();
      cpu.dispose();
      dev.forEach((t) => t.dispose());
    }
  });
});
