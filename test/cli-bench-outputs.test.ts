// `monarch-attn bench` output bugs: --json and --plot never share a file (the sweep goes to
// <plot>.sweep.json), --plot x.png is a real PNG (or a clear error without the renderer), the sweep
// subtitle names the frames actually swept, GPU-only columns are hidden on the CPU, a heavy CPU run is
// refused before it starts (with an estimate) unless --yes, the progress bar shows an ETA.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { guardCpuTime } from '../cli/bench';
import { estimateSteps } from '../cli/estimate';
import { planOutputs } from '../cli/outputs';
import { loadPngRenderer } from '../cli/png';
import { framesText, plotSubtitle } from '../cli/plot';
import { makeProgress } from '../cli/progress';
import { PRESETS } from '../benchmarks/presets';
import { tableOf, type BenchRow } from '../benchmarks/report';
import { cli } from './helpers/cli';

const SMALL = ['--backend', 'cpu', '--frames', '2', '--height', '4', '--width', '6', '--heads', '2', '--head-dim', '16', '-T', '1', '--no-progress'];

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-cli-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const f = (name: string) => path.join(dir, name);
const json = (name: string) => JSON.parse(fs.readFileSync(f(name), 'utf8'));

test('--json frames.json --plot frames.svg: the report stays the report, the sweep goes to frames.sweep.json', async () => {
  const r = await cli(['bench', ...SMALL, '--json', f('frames.json'), '--plot', f('frames.svg'), '--plot-frames', '1,3']);
  expect(r.error).toBeUndefined();
  expect(r.code).toBe(0);
  const report = json('frames.json');
  expect(report.tool).toBe('monarch-attn bench');
  expect(report.rows.length).toBeGreaterThan(1);
  expect(report.plot).toEqual({ image: f('frames.svg'), data: f('frames.sweep.json') });
  const sweep = json('frames.sweep.json');
  expect(sweep.frames).toEqual([1, 3]);
  expect(sweep.rows.map((x: { frames: number }) => x.frames)).toEqual([1, 3]);
  expect(fs.readFileSync(f('frames.svg'), 'utf8')).toMatch(/^<svg /);
  expect(r.out).toContain(`plot: ${f('frames.svg')} (sweep timings: ${f('frames.sweep.json')})`);
}, 60_000);

test('clashing or unsupported output names fail before anything runs', async () => {
  const clash = await cli(['bench', ...SMALL, '--json', f('a.sweep.json'), '--plot', f('a.svg')]);
  expect(clash.error?.message).toMatch(/--json .*a\.sweep\.json and the --plot sweep data are the same file/);
  const same = await cli(['bench', ...SMALL, '--json', f('x.json'), '--markdown', f('x.json')]);
  expect(same.error?.message).toMatch(/--json .*x\.json and --markdown are the same file/);
  const ext = await cli(['bench', ...SMALL, '--json', f('r.json'), '--plot', f('x.jpg')]);
  expect(ext.error).toBeInstanceOf(RangeError);
  expect(ext.error?.message).toMatch(/--plot .*x\.jpg: the plot is written as \.svg or \.png, received "\.jpg"/);
  expect(fs.readdirSync(dir)).toEqual([]);  // nothing was written
  expect(() => planOutputs({ plot: 'noext' })).toThrow(/received "no extension"/);
  expect(planOutputs({ plot: f('Plot.PNG') }).plot).toEqual({ image: f('Plot.PNG'), format: 'png', data: f('Plot.sweep.json') });
  // a missing folder fails now, not after the run
  const missing = await cli(['bench', ...SMALL, '--json', path.join(dir, 'no-such-folder', 'r.json')]);
  expect(missing.error?.message).toMatch(/--json .*r\.json: the folder .*no-such-folder does not exist/);
  expect(fs.readdirSync(dir)).toEqual([]);
});

function hasResvg(): boolean {
  try { require.resolve('@resvg/resvg-js'); return true; } catch { return false; }
}

test('--plot x.png writes a real PNG (or says which optional dependency is missing)', async () => {
  const r = await cli(['bench', ...SMALL, '--plot', f('x.png'), '--plot-frames', '1-3']);
  if (hasResvg()) {
    expect(r.error).toBeUndefined();
    const png = fs.readFileSync(f('x.png'));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    expect(png.readUInt32BE(16)).toBeGreaterThan(800);   // width: the SVG at 2× zoom
    expect(png.toString('latin1')).not.toContain('<svg');
    expect(json('x.sweep.json').frames).toEqual([1, 2, 3]);
  } else {
    expect(r.error?.message).toMatch(/writing a PNG needs the optional dependency @resvg\/resvg-js/);
    expect(fs.existsSync(f('x.png'))).toBe(false);
  }
  // Without the renderer: a clear error naming the package and the way out.
  const missing = () => loadPngRenderer('y.png', () => { throw new Error("Cannot find module '@resvg/resvg-js'"); });
  expect(missing).toThrow(/--plot y\.png: writing a PNG needs the optional dependency @resvg\/resvg-js, which is not installed .*npm install @resvg\/resvg-js.*or write an \.svg/);
}, 60_000);

test('the sweep subtitle names the frames swept, and the dense work at the largest', async () => {
  const r = await cli(['bench', ...SMALL, '--plot', f('s.svg'), '--plot-frames', '1-5:2']);
  expect(r.error).toBeUndefined();
  const svg = fs.readFileSync(f('s.svg'), 'utf8');
  expect(svg).toContain('frames 1-5:2');
  expect(svg).toContain('dense at 5 frames');
  expect(svg).not.toContain('41 frames');
  expect(framesText([1, 2, 3, 4])).toBe('1-4');
  expect(framesText([1, 9, 17])).toBe('1-17:8');
  expect(framesText([1, 2, 7])).toBe('1, 2, 7');
  expect(framesText([21])).toBe('21');
  const base = PRESETS['wan-480p'];
  expect(plotSubtitle(base, [21, 1, 11], 50)).toMatch(/frames 1-21:10; median of 50; dense at 21 frames = 6\.59 TFLOP$/);
  expect(plotSubtitle(base, [1], 50)).toMatch(/dense at 1 frame = /);
}, 60_000);

test('GPU-only columns (% peak, vs FA2, vs cuDNN) are hidden on the CPU, shown on CUDA', async () => {
  const r = await cli(['bench', ...SMALL, '--markdown', f('b.md')]);
  expect(r.error).toBeUndefined();
  const header = r.out.split('\n').find((l) => l.includes('ms (median)'))!;
  expect(header).toMatch(/method.*ms \(median\).*TFLOP\/s.*dense-eq TFLOP\/s.*rel L2 vs dense/);
  for (const c of ['% peak', 'vs FA2', 'vs cuDNN']) {
    expect(header).not.toContain(c);
    expect(fs.readFileSync(f('b.md'), 'utf8')).not.toContain(c);
  }
  const row = { method: 'x', kind: 'monarch', ms: 1, p10: 1, p90: 1, min: 1, n: 1, flops: 1, denseFlops: 1, tflops: 1, denseEqTflops: 1,
    pctPeak: 50, speedupVsFa2: 2, speedupVsCudnn: 1.5, relL2VsDense: 0.3, timer: 't', notes: [] } as BenchRow;
  expect(tableOf([row], 'cuda').head).toEqual(['method', 'ms (median)', 'TFLOP/s', 'dense-eq TFLOP/s', '% peak', 'vs FA2', 'vs cuDNN', 'rel L2 vs dense']);
  expect(tableOf([row], 'cuda').body[0]).toEqual(['x', '1.00', '1.00', '1.00', '50.0%', '2.00×', '1.50×', '0.300']);
  expect(tableOf([row], 'cpu').body[0]).toEqual(['x', '1.00', '1.00', '1.00', '0.300']);
}, 60_000);

test('a heavy preset on the CPU is refused with an estimate before it runs; --yes runs it', async () => {
  const t0 = Date.now();
  const r = await cli(['bench', '--backend', 'cpu', '--preset', 'wan-480p', '--json', f('never.json'), '--no-progress']);
  expect(Date.now() - t0).toBeLessThan(20_000);
  expect(r.error?.message).toMatch(/^bench wan-480p: estimated [\d.]+ (min|h) on the CPU \(the attention work at [\d.]+ GFLOP\/s dense, [\d.]+ GFLOP\/s Monarch, measured here\), over the 60 s limit; pass --yes/);
  expect(fs.existsSync(f('never.json'))).toBe(false);
  // The estimate is the timed calls' work at the given rates: wan-480p dense is 6.59 TFLOP a call.
  const rates = { denseGflops: 100, monarchGflops: 100 };
  const steps = estimateSteps(PRESETS['wan-480p'], [{ T: 1, factorization: 'monarchrt' }], { warmup: 2, repeats: 10 }, true, rates);
  expect(steps.map((s) => s.label)).toEqual(['our dense', 'our dense + lse + entropy', 'Monarch T=1 monarchrt']);
  expect(steps[0].seconds).toBeCloseTo(13 * 6.5934e12 / 1e11, -1);
  expect(steps[2].seconds).toBeLessThan(steps[0].seconds / 2);
  // The guard: over the limit → refused without --yes; with --yes (or a higher --max-seconds) it warns and runs.
  expect(() => guardCpuTime(120, rates, 'p', { yes: false })).toThrow(/estimated 2 min .*over the 60 s limit/);
  expect(() => guardCpuTime(5, rates, 'p', { yes: false, maxSeconds: 1 })).toThrow(/over the 1 s limit/);
  let err = '';
  const se = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => { err += String(c); return true; });
  try {
    expect(guardCpuTime(120, rates, 'p', { yes: true })).toMatch(/^estimated 2 min on the CPU/);
    expect(err).toMatch(/^warning: estimated 2 min on the CPU .*ETA/);
    err = '';
    guardCpuTime(120, rates, 'p', { yes: false, maxSeconds: 600 });
    expect(err).toMatch(/^warning: /);
    err = '';
    guardCpuTime(3, rates, 'p', { yes: false });
    expect(err).toBe('');
  } finally {
    se.mockRestore();
  }
  // A small CPU run prints its estimate and runs.
  const small = await cli(['bench', ...SMALL]);
  expect(small.error).toBeUndefined();
  expect(small.out).toMatch(/note: estimated \d+ s on the CPU/);
}, 60_000);

test('the progress bar shows elapsed time and an ETA, weighted by the steps', () => {
  const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 120 }) as unknown as NodeJS.WriteStream;
  let text = '';
  (stream as unknown as PassThrough).on('data', (c: Buffer) => { text += c.toString(); });
  const p = makeProgress(true, stream);
  p.start(10, 'first');
  p.tick('a long step', 9);   // nothing done yet
  p.tick('a short step', 1);  // the long step is done: 90 %
  p.log('a line');
  p.stop();
  expect(text).toMatch(/ETA/);
  expect(text).toMatch(/elapsed/);
  expect(text).toMatch(/90% \| a short step/);
  expect(text).toContain('a line\n');
  // Not a TTY (or --no-progress): no bar, log lines still printed.
  let plain = '';
  const quiet = makeProgress(false, { write: (s: string) => { plain += s; return true; }, isTTY: true } as unknown as NodeJS.WriteStream);
  quiet.start(3, 'x'); quiet.tick('y'); quiet.log('kept'); quiet.stop();
  expect(plain).toBe('kept\n');
});

test('monarch-attn build: --cpu and --cuda-arch exclude each other; a bad arch is refused', async () => {
  const both = await cli(['build', '--cpu', '--cuda-arch', '89']);
  expect(both.error?.message).toMatch(/--cpu and --cuda-arch exclude each other/);
  const bad = await cli(['build', '--cuda-arch', '8x']);   // scripts/build-cuda.js refuses it (message on stderr)
  expect(bad.code).toBe(1);
});
