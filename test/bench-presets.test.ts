// The text cross-attention (`wan-480p-cross`) and block-causal (`wan-480p-causal`) bench presets: their
// geometry, token counts and FLOPs (allowed pairs only), the twin shapes --check runs, the option errors,
// and a CPU run of small twins of both through the bench code path with --check (dense rows only for
// cross-attention, Monarch rows block-causal, the dense row masked the same way).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MonarchAttention } from '../lib/index';
import { denseFlops } from '../lib/flops';
import { twinShape } from '../benchmarks/bench_check';
import { denseVsCudnn } from '../benchmarks/bench_rows';
import { denseCausalChunk, describeGeometry, hasMonarch, resolveShape, shapeDenseFlops, tokenCounts } from '../benchmarks/presets';
import type { BenchRow } from '../benchmarks/report';
import { makeWorkload, monarchOptions } from '../benchmarks/workload';
import { cli } from './helpers/cli';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-presets-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('presets', () => {
  test('wan-480p-cross: 32,760 video queries against 512 text keys, dense FLOPs 4·Nq·Nk·d·H, no Monarch', () => {
    const s = resolveShape({ preset: 'wan-480p-cross' }, 'cuda');
    expect(s).toMatchObject({ name: 'wan-480p-cross', heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1 });
    expect(s.geometry).toEqual({ kind: 'cross', frames: 21, height: 30, width: 52, keys: 512 });
    expect(tokenCounts(s)).toEqual({ nq: 32760, nk: 512 });
    expect(denseCausalChunk(s)).toBe(0);
    expect(shapeDenseFlops(s)).toBe(4 * 32760 * 512 * 128 * 12);
    expect(hasMonarch(s)).toBe(false);
    expect(describeGeometry(s)).toBe('cross-attention: video 21×30×52 queries against 512 text keys');
    expect(() => monarchOptions(s, { T: 1, factorization: 'monarchrt' }, 'cpu')).toThrow(/wan-480p-cross is text cross-attention .*self-attention over one token set/);
  });

  test('wan-480p-causal: chunks of 3 frames = 4,680 tokens; FLOPs over the allowed pairs C²·K(K+1)/2', () => {
    const s = resolveShape({ preset: 'wan-480p-causal' }, 'cuda');
    expect(s.geometry).toEqual({ kind: 'video', frames: 21, height: 30, width: 52, causalFrames: 3 });
    expect(tokenCounts(s)).toEqual({ nq: 32760, nk: 32760 });
    expect(denseCausalChunk(s)).toBe(4680);
    // K = 7 chunks: chunk c's 4,680 queries see (c + 1)·4,680 keys → 4680²·28 pairs, 4/7 of dense.
    expect(shapeDenseFlops(s)).toBe(4 * 4680 * 4680 * 28 * 128 * 12);
    expect(shapeDenseFlops(s) / denseFlops(32760, 32760, 128, 1, 12)).toBeCloseTo(4 / 7, 12);
    expect(hasMonarch(s)).toBe(true);
    expect(monarchOptions(s, { T: 2, factorization: 'vmonarch' }, 'cpu').causal).toEqual({ chunkFrames: 3 });
    expect(describeGeometry(s)).toBe('video 21×30×52, block-causal chunks of 3 frames');
  });

  test('--check twins: two chunks of the causal preset; the cross preset keeps its 512 text keys', () => {
    const c = twinShape(resolveShape({ preset: 'wan-480p-causal' }, 'cuda'));
    expect(c.geometry).toEqual({ kind: 'video', frames: 6, height: 30, width: 52, causalFrames: 3 });
    expect(c.heads).toBe(2);
    const x = twinShape(resolveShape({ preset: 'wan-480p-cross' }, 'cuda'));
    expect(x.geometry).toEqual({ kind: 'cross', frames: 2, height: 30, width: 52, keys: 512 });
  });

  test('custom shapes: video options keep a cross preset cross; --chunk-frames replaces the causal chunk', () => {
    expect(resolveShape({ preset: 'wan-480p-cross', frames: 2, height: 4, width: 6 }, 'cpu').geometry)
      .toEqual({ kind: 'cross', frames: 2, height: 4, width: 6, keys: 512 });
    expect(resolveShape({ frames: 2, height: 4, width: 6, crossKeys: 7 }, 'cpu').geometry)
      .toEqual({ kind: 'cross', frames: 2, height: 4, width: 6, keys: 7 });
    expect(resolveShape({ preset: 'wan-480p-causal', frames: 6 }, 'cpu').geometry)
      .toEqual({ kind: 'video', frames: 6, height: 30, width: 52, causalFrames: 3 });
    expect(resolveShape({ preset: 'wan-480p-causal', chunkFrames: 3 }, 'cpu').geometry)
      .toEqual({ kind: 'video', frames: 21, height: 30, width: 52, chunkFrames: 3 });
    expect(resolveShape({ preset: 'wan-480p-cross', heads: 2 }, 'cpu').name).toBe('wan-480p-cross*');
  });

  test('impossible combinations are RangeErrors naming the options', () => {
    const bad = (o: Parameters<typeof resolveShape>[0], re: RegExp) => {
      expect(() => resolveShape(o, 'cpu')).toThrow(RangeError);
      expect(() => resolveShape(o, 'cpu')).toThrow(re);
    };
    bad({ frames: 5, causalFrames: 2 }, /--causal-frames 2 must divide the 5 frames/);
    bad({ frames: 6, chunkFrames: 4 }, /--chunk-frames 4 must divide the 6 frames/);
    bad({ frames: 6, chunkFrames: 2, causalFrames: 3 }, /either --chunk-frames .* or --causal-frames .*not both/);
    bad({ crossKeys: 16, causalFrames: 1 }, /text cross-attention .*no block-causal chunks/);
    bad({ preset: 'wan-480p-cross', causalFrames: 3 }, /text cross-attention \(--cross-keys or a cross preset\) has no block-causal chunks/);
    bad({ seq: 64, crossKeys: 16 }, /either --seq or --frames/);
  });

  test('a cross workload draws Nq video queries and Nk text keys per input set', () => {
    const s = resolveShape({ frames: 2, height: 2, width: 3, crossKeys: 5, heads: 2, headDim: 4, dtype: 'float32' }, 'cpu');
    const w = makeWorkload(s, 'cpu', 2, 1);
    try {
      expect(w.sets).toHaveLength(2);
      for (const x of w.sets) {
        expect(x.q.shape).toEqual([1, 12, 2, 4]);
        expect(x.k.shape).toEqual([1, 5, 2, 4]);
        expect(x.v.shape).toEqual([1, 5, 2, 4]);
      }
    } finally {
      w.dispose();
    }
  });

  test('our dense vs cuDNN: TFLOP/s ratios of the dense rows, none without a cuDNN row', () => {
    const row = (method: string, kind: BenchRow['kind'], tflops: number | null) => ({ method, kind, tflops }) as BenchRow;
    const rows = [row('our dense (cuda)', 'dense', 400), row('our dense + lse + entropy (cuda)', 'dense', 380), row('torch cuDNN (CUDNN_ATTENTION)', 'torch', 500)];
    expect(denseVsCudnn(rows)).toEqual([{ method: 'our dense (cuda)', ratio: 0.8 }, { method: 'our dense + lse + entropy (cuda)', ratio: 0.76 }]);
    expect(denseVsCudnn(rows.slice(0, 2))).toEqual([]);
  });
});

describe('bench on the CPU through the CLI, --check', () => {
  const COMMON = ['--backend', 'cpu', '--heads', '2', '--head-dim', '16', '-T', '1', '--check', '--no-progress'];
  const report = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));

  test('a tiny cross-attention shape: dense rows only, Monarch skipped with a note, checks pass', async () => {
    const r = await cli(['bench', ...COMMON, '--preset', 'wan-480p-cross', '--frames', '2', '--height', '3', '--width', '5', '--cross-keys', '7', '--json', path.join(dir, 'x.json')]);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const j = report('x.json');
    expect(j.shape).toMatchObject({ nq: 30, nk: 7, geometry: { kind: 'cross', keys: 7 } });
    expect(j.rows.map((x: BenchRow) => x.method)).toEqual(['our dense (cpu)', 'our dense + lse + entropy (cpu)']);
    for (const x of j.rows) {
      expect(x.ms).toBeGreaterThan(0);
      expect(x.flops).toBe(4 * 30 * 7 * 16 * 2);
    }
    expect(j.checks.map((c: { name: string }) => c.name)).toEqual(['our dense cpu/bfloat16 vs cpu/float32 (2×3×5 × 7 keys, 2h)']);
    expect(j.checks.every((c: { pass: boolean }) => c.pass)).toBe(true);
    expect(j.notes.join('\n')).toMatch(/Monarch rows skipped: custom is text cross-attention \(30 queries against 7 keys\)/);
    expect(r.out).toMatch(/note: Monarch rows skipped/);
  });

  test('a tiny block-causal shape: Monarch with causal chunks and the dense row masked alike, checks pass', async () => {
    const r = await cli(['bench', ...COMMON, '--preset', 'wan-480p-causal', '--frames', '4', '--height', '2', '--width', '3', '--causal-frames', '2', '--json', path.join(dir, 'c.json')]);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const j = report('c.json');
    expect(j.shape).toMatchObject({ nq: 24, nk: 24, geometry: { kind: 'video', causalFrames: 2 } });
    // chunks of 12 tokens: 12 queries see 12 keys, 12 see 24
    const causalDense = 4 * (12 * 12 + 12 * 24) * 16 * 2;
    expect(j.rows.map((x: BenchRow) => x.method)).toEqual(['our dense (cpu)', 'our dense + lse + entropy (cpu)', 'Monarch T=1 monarchrt', 'Monarch T=1 vmonarch']);
    for (const x of j.rows) {
      expect(x.ms).toBeGreaterThan(0);
      expect(x.denseFlops).toBe(causalDense);
      expect(x.notes).toEqual([]);  // no FLOP-formula disagreement
    }
    expect(j.rows[0].flops).toBe(causalDense);
    // Monarch rows count the allowed tile pairs only: attn.flops() of the block-causal configuration.
    const flops = (causal: boolean) => {
      const a = new MonarchAttention({ layout: { kind: 'video', frames: 4, height: 2, width: 3 }, heads: 2, headDim: 16, backend: 'cpu', ...(causal ? { causal: { chunkFrames: 2 } } : {}) });
      try { return a.flops(); } finally { a.dispose(); }
    };
    expect(j.rows[2].flops).toBe(flops(true));
    expect(flops(true)).toBeLessThan(flops(false));
    expect(j.checks).toHaveLength(3);
    expect(j.checks.every((c: { pass: boolean; name: string }) => c.pass && /causal 2/.test(c.name))).toBe(true);
  });

  test('the causal dense row is block-causal: its output on set 0 differs from bidirectional dense', async () => {
    const { measureDense } = await import('../benchmarks/measure');
    const causal = resolveShape({ frames: 4, height: 2, width: 3, causalFrames: 2, heads: 1, headDim: 8, dtype: 'float32' }, 'cpu');
    const plain = { ...causal, geometry: { kind: 'video' as const, frames: 4, height: 2, width: 3 } };
    const t = { warmup: 0, repeats: 1 };
    const wc = makeWorkload(causal, 'cpu', 1, 3);
    const wp = makeWorkload(plain, 'cpu', 1, 3);
    try {
      const a = measureDense(wc, t).out;
      const b = measureDense(wp, t).out;
      const row = 8;  // token 0..11 (chunk 0) see only chunk 0's keys; token 12.. see all
      expect(Math.max(...a.subarray(0, 12 * row).map((x, i) => Math.abs(x - b[i])))).toBeGreaterThan(1e-3);
      expect(Math.max(...a.subarray(12 * row).map((x, i) => Math.abs(x - b[12 * row + i])))).toBeLessThan(1e-5);
    } finally {
      wc.dispose();
      wp.dispose();
    }
  });
});
