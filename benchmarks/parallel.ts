// Multi-GPU sequence-parallel benchmark (Ulysses over NCCL): spawns one process per GPU for each rank
// count (CUDA_VISIBLE_DEVICES = its GPU, a localhost TCP rendezvous), times SequenceParallelAttention
// forwards end to end (both all-to-alls included), the q/k/v all-to-all alone and the attention on the
// rank's heads alone, and reports scaling efficiency T1 / (P · T_P) against one GPU running all heads
// (rank 0 of the P = 1 run) and the achieved all-to-all bandwidth. Outputs are checked first: the
// P-rank output shards equal the single-GPU output bit for bit (rank 0 compares its shard).
//
//   node dist/benchmarks/parallel.js [--ranks 1,2,4,8] [--preset wan14b-720p] [--iters 20] [--warmup 3]
//                                    [--numIters 1] [--port 29511] [--timeout-ms 120000] [--json out.json]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { DeviceTensor, info, MonarchAttention, NcclCommunicator, SequenceParallelAttention, tensor, toBfloat16 } from '../lib';
import type { SequenceParallelOptions } from '../lib';
import { isBidirectionalVideo, PRESETS } from './presets';
import { percentile } from './stats';

interface Preset { frames: number; height: number; width: number; heads: number; headDim: number }
const OWN: Record<string, Preset> = {
  'wan14b-720p': { frames: 21, height: 45, width: 80, heads: 40, headDim: 128 },  // Wan 2.1 14B 720p, T=1
  'wan14b-480p': { frames: 21, height: 30, width: 52, heads: 40, headDim: 128 },
};

function preset(name: string): Preset {
  if (OWN[name]) return OWN[name];
  const p = PRESETS[name];
  if (!p || !isBidirectionalVideo(p.geometry)) {
    throw new RangeError(`--preset ${name} is not one of ${[...Object.keys(OWN), 'wan-480p', 'wan-720p'].join(', ')}`);
  }
  return { frames: p.geometry.frames, height: p.geometry.height, width: p.geometry.width, heads: p.heads, headDim: p.headDim };
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const median = (x: readonly number[]): number => percentile(x, 50);  // the bench's median (stats.ts)

interface RankReport {
  rank: number; ranks: number; forwardMs: number; allToAllMs: number; attentionMs: number;
  allToAllBytes: number; singleGpuMs?: number; bitIdentical?: boolean;
}

/** Deterministic bf16 shard of tokens [t0, t0 + n) of a [1][N][H][D] tensor (value from the global index). */
function shard(seed: number, N: number, H: number, D: number, t0: number, n: number): DeviceTensor {
  const f = new Float32Array(n * H * D);
  for (let i = 0; i < f.length; i++) {
    const g = t0 * H * D + i;
    f[i] = Math.sin(g * 0.6180339 + seed * 1.7) * 1.5;
  }
  return DeviceTensor.fromHost(tensor(toBfloat16(f), [1, n, H, D], 'bfloat16'));
}

async function worker(): Promise<void> {
  const rank = Number(arg('rank', '0')), ranks = Number(arg('ranks', '1'));
  const p = preset(arg('preset', 'wan14b-720p'));
  const iters = Number(arg('iters', '20')), warmup = Number(arg('warmup', '3'));
  const timeoutMs = Number(arg('timeout-ms', '120000'));
  const N = p.frames * p.height * p.width, n = N / ranks;
  const opts: SequenceParallelOptions = {
    layout: { kind: 'video', frames: p.frames, height: p.height, width: p.width },
    heads: p.heads, headDim: p.headDim, dtype: 'bfloat16', backend: 'cuda', numIters: Number(arg('numIters', '1')),
  };
  const comm = await NcclCommunicator.create({ rank, size: ranks, timeoutMs, rendezvous: { port: Number(arg('port', '29511')) } });
  const sp = await SequenceParallelAttention.create(comm, opts);
  const [q, k, v] = [1, 2, 3].map((s) => shard(s, N, p.heads, p.headDim, rank * n, n));
  const report: RankReport = { rank, ranks, forwardMs: 0, allToAllMs: 0, attentionMs: 0, allToAllBytes: 0 };

  // Check first: rank 0's shard equals the same rows of one GPU running all heads.
  if (rank === 0) {
    const full = [1, 2, 3].map((s) => shard(s, N, p.heads, p.headDim, 0, N));
    const plain = new MonarchAttention(opts);
    const want = await plain.forward(full[0], full[1], full[2]);
    const got = await sp.forward(q, k, v);
    const a = (await want.download()).data, b = (await got.download()).data;
    report.bitIdentical = b.every((x, i) => x === a[i]);
    const t: number[] = [];
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = performance.now();
      (await plain.forward(full[0], full[1], full[2])).dispose();
      if (i >= warmup) t.push(performance.now() - t0);
    }
    if (ranks === 1) report.singleGpuMs = median(t);
    [want, got, ...full].forEach((x) => x.dispose());
    plain.dispose();
  } else {
    (await sp.forward(q, k, v)).dispose();
  }

  const fwd: number[] = [], a2a: number[] = [], att: number[] = [];
  // The q/k/v all-to-all alone (the same regions a forward uses) and the local attention alone.
  const g = sp.headGroups, Hr = g.count[rank], E = 2;
  const group = [0, 1, 2].map(() => DeviceTensor.empty([1, N, Hr, p.headDim], 'bfloat16'));
  const shardRegion = (peer: number) => ({ offset: g.start[peer] * p.headDim * E, rows: n, rowBytes: g.count[peer] * p.headDim * E, pitch: p.heads * p.headDim * E });
  const groupRegion = (peer: number) => ({ offset: peer * n * Hr * p.headDim * E, rows: 1, rowBytes: n * Hr * p.headDim * E, pitch: n * Hr * p.headDim * E });
  const peers = [...Array(ranks).keys()];
  const parts = [q, k, v].map((s, i) => ({ src: s, dst: group[i], send: peers.map(shardRegion), recv: peers.map(groupRegion) }));
  report.allToAllBytes = 3 * peers.filter((x) => x !== rank).reduce((acc, x) => acc + n * g.count[x] * p.headDim * E, 0);
  const local = new MonarchAttention({ ...opts, heads: Hr });
  for (let i = 0; i < warmup + iters; i++) {
    await comm.barrier();
    let t0 = performance.now();
    (await sp.forward(q, k, v)).dispose();
    if (i >= warmup) fwd.push(performance.now() - t0);
    await comm.barrier();
    t0 = performance.now();
    await comm.allToAll(parts);
    if (i >= warmup) a2a.push(performance.now() - t0);
    t0 = performance.now();
    (await local.forward(group[0], group[1], group[2])).dispose();
    if (i >= warmup) att.push(performance.now() - t0);
  }
  report.forwardMs = median(fwd);
  report.allToAllMs = median(a2a);
  report.attentionMs = median(att);
  process.stdout.write(`@@report ${JSON.stringify(report)}\n`);
  [q, k, v, ...group].forEach((x) => x.dispose());
  local.dispose();
  sp.dispose();
  comm.dispose();
}

function runRanks(ranks: number, port: number): Promise<RankReport[]> {
  const script = process.argv[1];
  const pass = process.argv.slice(2).filter((_, i, a) => !['--ranks', '--json', '--port'].includes(a[i]) && !['--ranks', '--json', '--port'].includes(a[i - 1]));
  return Promise.all([...Array(ranks).keys()].map((r) => new Promise<RankReport>((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--worker', '--rank', String(r), '--ranks', String(ranks), '--port', String(port), ...pass], {
      env: { ...process.env, CUDA_VISIBLE_DEVICES: String(r) }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('@@report '));
      if (code === 0 && line) resolve(JSON.parse(line.slice(9)) as RankReport);
      else reject(new Error(`rank ${r} of ${ranks} exited with ${code}`));
    });
  })));
}

async function launcher(): Promise<void> {
  const gpus = info().deviceCount;
  if (gpus < 1) throw new Error(`no GPU visible (${info().cudaMessage}); this benchmark needs one process per GPU`);
  const dflt = [1, 2, 4, 8].filter((x) => x <= gpus).join(',');
  const list = arg('ranks', dflt).split(',').map(Number);
  if (list[0] !== 1) list.unshift(1);  // the single-GPU baseline
  const bad = list.find((x) => !Number.isInteger(x) || x < 1 || x > gpus);
  if (bad !== undefined) throw new RangeError(`--ranks ${bad}: ${gpus} GPU(s) visible`);
  const port = Number(arg('port', '29511'));
  const runs: Array<Record<string, unknown>> = [];
  let t1 = 0;
  for (const [i, P] of list.entries()) {
    const reports = await runRanks(P, port + i);
    const r0 = reports.find((r) => r.rank === 0)!;
    if (P === 1) t1 = r0.singleGpuMs!;
    const tP = Math.max(...reports.map((r) => r.forwardMs));
    const a2a = Math.max(...reports.map((r) => r.allToAllMs));
    const row = {
      ranks: P, forwardMs: tP, speedup: t1 / tP, scalingEfficiency: t1 / (P * tP),
      allToAllMs: a2a, allToAllGBpsPerRank: P > 1 ? r0.allToAllBytes / (a2a * 1e6) : null,
      attentionMs: Math.max(...reports.map((r) => r.attentionMs)), bitIdentical: r0.bitIdentical, perRank: reports,
    };
    runs.push(row);
    console.log(`P=${P}: forward ${tP.toFixed(2)} ms, speedup ${row.speedup.toFixed(2)}×, efficiency ${(100 * row.scalingEfficiency).toFixed(1)} %, ` +
      `q/k/v all-to-all ${a2a.toFixed(2)} ms${row.allToAllGBpsPerRank ? ` (${row.allToAllGBpsPerRank.toFixed(1)} GB/s per rank)` : ''}, attention ${row.attentionMs.toFixed(2)} ms, bit-identical ${r0.bitIdentical}`);
  }
  const json = arg('json', '');
  const out = { preset: arg('preset', 'wan14b-720p'), singleGpuMs: t1, gpu: info().device, runs };
  if (json) fs.writeFileSync(json, JSON.stringify(out, null, 2));
}

const main = process.argv.includes('--worker') ? worker : launcher;
main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
