// Bench rows → a cli-table3 table for people, markdown for docs, JSON for machines.
import Table from 'cli-table3';
import type { CheckResult } from './bench_check';
import type { RunHeader } from './env';
import { headerLines } from './env';

export interface BenchRow {
  method: string;
  kind: 'monarch' | 'dense' | 'torch';
  T?: number;
  factorization?: string | null;
  /** Median / p10 / p90 / min of the per-call times (ms), and how many. */
  ms: number | null; p10: number | null; p90: number | null; min: number | null; n: number;
  /** Work of one call: the method's own FLOPs, and dense 4·Nq·Nk·d·B·H. */
  flops: number | null;
  denseFlops: number;
  tflops: number | null;
  denseEqTflops: number | null;
  pctPeak: number | null;
  speedupVsFa2: number | null;
  speedupVsCudnn: number | null;
  /** ‖out − dense‖/‖dense‖ on input set 0 (our dense on the same backend); null for dense/torch. */
  relL2VsDense: number | null;
  timer: string;
  notes: string[];
}

export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a < 1e-3) return x.toExponential(1);
  return x.toPrecision(digits);
}

const fmtX = (x: number | null) => (x === null ? '—' : `${fmt(x)}×`);
const fmtPct = (x: number | null) => (x === null ? '—' : `${x.toFixed(1)}%`);

const COLUMNS = ['method', 'ms (median)', 'TFLOP/s', 'dense-eq TFLOP/s', '% peak', 'vs FA2', 'vs cuDNN', 'rel L2 vs dense'];
/** Columns that only a CUDA run fills (tensor-core peak, torch FA2 / cuDNN speedups): hidden on the CPU. */
export const GPU_ONLY_COLUMNS: readonly string[] = ['% peak', 'vs FA2', 'vs cuDNN'];

function allCells(r: BenchRow): string[] {
  return [r.method, fmt(r.ms), fmt(r.tflops), fmt(r.denseEqTflops), fmtPct(r.pctPeak), fmtX(r.speedupVsFa2),
    fmtX(r.speedupVsCudnn), r.kind === 'monarch' ? fmt(r.relL2VsDense) : '—'];
}

/** The column heads and cells of a run on `backend`. */
export function tableOf(rows: BenchRow[], backend: 'cpu' | 'cuda'): { head: string[]; body: string[][] } {
  const keep = COLUMNS.map((c) => backend === 'cuda' || !GPU_ONLY_COLUMNS.includes(c));
  const pick = (xs: string[]) => xs.filter((_, i) => keep[i]);
  return { head: pick(COLUMNS), body: rows.map((r) => pick(allCells(r))) };
}

export function rowsTable(rows: BenchRow[], backend: 'cpu' | 'cuda'): string {
  const { head, body } = tableOf(rows, backend);
  const t = new Table({ head, style: { head: [], border: [], compact: true } });
  for (const r of body) t.push(r);
  return t.toString();
}

export function checksTable(checks: CheckResult[]): string {
  const t = new Table({ head: ['check', 'rel L2', 'max |Δ|', 'tol', 'result'], style: { head: [], border: [], compact: true } });
  for (const c of checks) t.push([c.name + (c.note ? `\n  ${c.note}` : ''), fmt(c.relL2), fmt(c.maxAbs), fmt(c.tol), c.pass ? 'pass' : 'FAIL']);
  return t.toString();
}

export function markdownTable(head: string[], body: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [`| ${head.map(esc).join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export interface BenchReport {
  tool: 'monarch-attn bench';
  header: RunHeader;
  shape: { name: string; description: string; batch: number; heads: number; headDim: number; dtype: string; nq: number; nk: number; geometry: object };
  settings: { warmup: number; repeats: number; rotate: number; seed: number; iters: number[]; factorizations: string[] };
  peak: { tflops: number | null; label: string };
  torch: string;
  checks: CheckResult[];
  rows: BenchRow[];
  notes: string[];
  /** `--plot`: the image and the JSON of the sweep's timings (a separate file, never the --json report). */
  plot?: { image: string; data: string };
  /** Our dense rows' TFLOP/s over torch cuDNN's at the same shape (CUDA runs with a cuDNN row). */
  denseVsCudnn?: Array<{ method: string; ratio: number }>;
  /** CPU runs: the time estimated before running (attention work at the rates measured here). */
  estimate?: { seconds: number; denseGflops: number; monarchGflops: number };
}

/** "our dense vs cuDNN TFLOP/s: our dense (cuda) 0.632×, …". */
export function denseVsCudnnLine(ratios: NonNullable<BenchReport['denseVsCudnn']>): string {
  return `our dense vs cuDNN TFLOP/s: ${ratios.map((x) => `${x.method} ${fmt(x.ratio)}×`).join(', ')}`;
}

export function benchMarkdown(r: BenchReport): string {
  const lines = [`# monarch-attn bench: ${r.shape.name}`, '', ...headerLines(r.header).map((l) => `    ${l}`), '',
    `Shape: ${r.shape.description} (Nq = ${r.shape.nq}, Nk = ${r.shape.nk}).`,
    `Timing: median of ${r.settings.repeats} calls after ${r.settings.warmup} warm-up, rotating ${r.settings.rotate} input sets, seed ${r.settings.seed}. Peak: ${r.peak.label}. ${r.torch}.`, '',
    (({ head, body }) => markdownTable(head, body))(tableOf(r.rows, r.header.backend))];
  if (r.denseVsCudnn?.length) lines.push('', `${denseVsCudnnLine(r.denseVsCudnn)}.`);
  if (r.checks.length) {
    lines.push('', '## Checks before timing', '', markdownTable(['check', 'rel L2', 'max |Δ|', 'tol', 'result'],
      r.checks.map((c) => [c.name + (c.note ? ` (${c.note})` : ''), fmt(c.relL2), fmt(c.maxAbs), fmt(c.tol), c.pass ? 'pass' : 'FAIL'])));
  }
  const notes = [...r.notes, ...r.rows.flatMap((row) => row.notes.map((n) => `${row.method}: ${n}`))];
  if (notes.length) lines.push('', '## Notes', '', ...notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}
