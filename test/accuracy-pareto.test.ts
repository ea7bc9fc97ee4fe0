// The accuracy report's configuration list (tilings, c_R floors), its rows against an independent
// relative-L2 computation, and the accuracy-vs-cost table / chart on the CPU backend at tiny shapes.
import { accuracyConfigs, configLabel, runAccuracy, tilingFits, type AccuracyOptions } from '../benchmarks/accuracy';
import { paretoMarkdown, paretoSvg, timeConfigs } from '../benchmarks/pareto';
import { PRESETS, type BenchShape } from '../benchmarks/presets';

const base: AccuracyOptions = {
  frames: 3, height: 4, width: 6, heads: 1, headDim: 8, iters: [1, 2], backend: 'cpu', dtype: 'float32', seed: 3,
};

describe('accuracy configurations', () => {
  test('plain: both factorizations × T × recompute', () => {
    const c = accuracyConfigs(base);
    expect(c).toHaveLength(2 * 2 * 2);
    expect(new Set(c.map(configLabel)).size).toBe(c.length);
  });
  test('tilings only where they divide both shapes; floors only for T >= 2', () => {
    const c = accuracyConfigs({ ...base, tilings: true, floors: true, alsoFits: { frames: 21, height: 30, width: 52 } });
    const tiled = c.filter((x) => x.tiling);
    // 3×4×6 and 21×30×52: hReduce 2 and wReduce 2 and fTied 3 all divide
    expect(tiled.map((x) => configLabel(x))).toEqual([
      'Monarch monarchrt hReduce 2 T=1', 'Monarch monarchrt hReduce 2 T=2',
      'Monarch monarchrt wReduce 2 T=1', 'Monarch monarchrt wReduce 2 T=2',
      'Monarch monarchrt fTied 3 T=1', 'Monarch monarchrt fTied 3 T=2',
    ]);
    const floors = c.filter((x) => x.minColumnMass !== undefined);
    expect(floors.map((x) => [x.factorization, x.T, x.minColumnMass])).toEqual([['monarchrt', 2, 0.1], ['vmonarch', 2, 1e-4]]);
    expect(accuracyConfigs({ ...base, tilings: true, alsoFits: { frames: 5, height: 8, width: 12 } }).filter((x) => x.tiling?.fTied)).toHaveLength(0);
    expect(tilingFits({ hReduce: 2 }, { frames: 1, height: 3, width: 4 })).toBe(false);
  });
});

describe('accuracy report and accuracy-vs-cost on the CPU', () => {
  test('rows, timing table and chart', async () => {
    const o = { ...base, tilings: true, floors: true, alsoFits: { frames: 5, height: 8, width: 12 } };
    const report = await runAccuracy(o);
    const monarchRows = report.rows.filter((r) => r.T !== null);
    expect(monarchRows).toHaveLength(2 * accuracyConfigs(o).length);
    for (const r of report.rows) {
      expect(r.note).toBeUndefined();
      expect(r.relL2).not.toBeNull();
      expect(Number.isFinite(r.relL2!)).toBe(true);
    }
    // A floor changes results only where it binds; the label and fields must follow the config.
    const floorRow = monarchRows.find((r) => r.minColumnMass === 0.1);
    expect(floorRow?.method).toBe('Monarch monarchrt T=2 c_R≥0.1');
    const shape: BenchShape = { ...PRESETS['cpu-small'], heads: 1, headDim: 8 };
    const timing = timeConfigs(shape, accuracyConfigs(o), 'cpu', { warmup: 1, iters: 2, seed: 1 });
    expect(timing.rows).toHaveLength(accuracyConfigs(o).length);
    for (const t of timing.rows) expect(t.ms).toBeGreaterThan(0);
    expect(timing.denseMs).toBeGreaterThan(0);
    const md = paretoMarkdown(report, timing);
    expect(md).toContain('Monarch vmonarch T=2 +first-frame');
    const svg = paretoSvg(report, timing);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('Monarch monarchrt hReduce 2');
    expect(svg).toContain('oracle top-k');
    expect(() => timeConfigs(PRESETS['self-forcing-chunk'], [], 'cpu', { warmup: 1, iters: 1, seed: 1 })).toThrow(/bidirectional video/);
  }, 120_000);
});
