// Turns measurements into rows: TFLOP/s (actual and dense-equivalent), % of peak, speedups vs torch.
import type { Measured } from './measure';
import type { BenchRow } from './report';
import { summarize, TimeSummary } from './stats';

export function rowFrom(method: string, kind: BenchRow['kind'], ms: TimeSummary | null, flops: number | null, denseFlops: number,
  peak: number | null, timer: string, notes: string[] = []): BenchRow {
  const med = ms?.median ?? null;
  const tflops = med && flops !== null ? flops / (med * 1e-3) / 1e12 : null;
  return {
    method, kind,
    ms: med, p10: ms?.p10 ?? null, p90: ms?.p90 ?? null, min: ms?.min ?? null, n: ms?.n ?? 0,
    flops, denseFlops,
    tflops,
    denseEqTflops: med ? denseFlops / (med * 1e-3) / 1e12 : null,
    pctPeak: tflops !== null && peak ? (100 * tflops) / peak : null,
    speedupVsFa2: null, speedupVsCudnn: null, relL2VsDense: null,
    timer, notes,
  };
}

export function rowFromMeasured(method: string, kind: BenchRow['kind'], m: Measured, denseFlops: number, peak: number | null): BenchRow {
  return rowFrom(method, kind, summarize(m.times), m.flops, denseFlops, peak, m.timer, m.notes);
}

export function failedRow(method: string, kind: BenchRow['kind'], denseFlops: number, error: string): BenchRow {
  return rowFrom(method, kind, null, null, denseFlops, null, 'n/a', [`failed: ${error}`]);
}

/** Fills speedupVsFa2 / speedupVsCudnn = torch median / row median. */
export function addSpeedups(rows: BenchRow[]): void {
  const fa2 = rows.find((r) => r.method.startsWith('torch FA2'))?.ms ?? null;
  const cudnn = rows.find((r) => r.method.startsWith('torch cuDNN'))?.ms ?? null;
  for (const r of rows) {
    if (r.ms === null) continue;
    r.speedupVsFa2 = fa2 ? fa2 / r.ms : null;
    r.speedupVsCudnn = cudnn ? cudnn / r.ms : null;
  }
}

/** Our dense rows' TFLOP/s as a fraction of torch cuDNN's at the same shape (the issue-14 target); [] without both. */
export function denseVsCudnn(rows: BenchRow[]): Array<{ method: string; ratio: number }> {
  const cudnn = rows.find((r) => r.method.startsWith('torch cuDNN'))?.tflops ?? null;
  if (!cudnn) return [];
  return rows.filter((r) => r.kind === 'dense' && r.tflops !== null).map((r) => ({ method: r.method, ratio: r.tflops! / cudnn }));
}
