// Memory bounded before allocation (issue 8, item 3) and native memory visible to the GC (item 6):
// cheap checks run before any per-token map is built; a configuration whose memory exceeds
// maxWorkspaceBytes (default: os.totalmem() on the CPU) is a RangeError naming both sizes, in
// milliseconds and without allocating; the plan's workspace is reported to V8 as external memory.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { MonarchAttention } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { native } from '../lib/native';

function rejectedFast(opts: MonarchOptions, cls: ErrorConstructor, pattern: RegExp): void {
  const rss0 = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  let err: unknown;
  try {
    new MonarchAttention(opts).dispose();
  } catch (e) {
    err = e;
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const grownMB = (process.memoryUsage().rss - rss0) / 2 ** 20;
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toMatch(pattern);
  expect(ms).toBeLessThan(250);
  expect(grownMB).toBeLessThan(64);  // the per-token maps alone would be gigabytes
}

describe('requests that would need terabytes are refused in milliseconds without allocating', () => {
  test('sequence of 2^30 tokens, 16 heads of 128: a RangeError naming the size and the budget', () => {
    rejectedFast({ layout: { kind: 'sequence', length: 2 ** 30, blockSize: 2 ** 15 }, heads: 16, headDim: 128, backend: 'cpu' },
      RangeError, /MonarchAttention .* needs \d+(\.\d+)? TB \(\d+ bytes\), more than maxWorkspaceBytes .*\(the default: os\.totalmem\(\)\)/);
  });

  test('padded sequence (per-token maps of 2^30 entries would come first): refused before the maps', () => {
    rejectedFast({ layout: { kind: 'sequence', length: 2 ** 30 - 1, blockSize: 2 ** 15 }, heads: 16, headDim: 128, backend: 'cpu' },
      RangeError, /maxWorkspaceBytes/);
  });

  test('video of 2.1e9 tokens with wReduce (gather maps): refused before the maps', () => {
    rejectedFast({ layout: { kind: 'video', frames: 1024, height: 1024, width: 2047, wReduce: 23 }, heads: 1, headDim: 1, backend: 'cpu' },
      RangeError, /tile-order copies.*needs .* bytes\), more than maxWorkspaceBytes/);
  });

  test('a cheap bad option (heads 0) on a huge padded layout is reported first, without building maps', () => {
    rejectedFast({ layout: { kind: 'sequence', length: 2 ** 31 - 1, blockSize: 2 ** 15 }, heads: 0, headDim: 128, backend: 'cpu' },
      RangeError, /^heads 0 is out of range/);
    rejectedFast({ layout: { kind: 'video', frames: 1024, height: 1024, width: 2047, wReduce: 23 }, heads: 2, headDim: 0, backend: 'cpu' },
      RangeError, /^headDim 0/);
    rejectedFast({ layout: { kind: 'sequence', length: 2 ** 31 - 1, blockSize: 2 ** 15 }, heads: 1, headDim: 8, dtype: 'float64' as never, backend: 'cpu' },
      RangeError, /^dtype "float64"/);
  });
});

describe('maxWorkspaceBytes', () => {
  const opts: MonarchOptions = { layout: { kind: 'video', frames: 4, height: 6, width: 8 }, heads: 2, headDim: 16, backend: 'cpu' };

  test('the instance reports its memory; a budget one byte short is refused, the exact budget accepted', () => {
    const a = new MonarchAttention(opts);
    const need = a.config.workspaceBytes;
    a.dispose();
    // aL, y: B·H·A·A·b1·b2·D·4 = 2·4·4·48·16·4 bytes each; cL: B·H·A·A·b1·b2·4.
    expect(need).toBe(2 * (2 * 4 * 4 * 48 * 16 * 4) + 2 * 4 * 4 * 48 * 4);
    expect(() => new MonarchAttention({ ...opts, maxWorkspaceBytes: need - 1 })).toThrow(new RegExp(`needs ${need / 1000 > 1000 ? '.*' : ''}.*${need} bytes\\), more than maxWorkspaceBytes .*${need - 1} bytes\\); lower queryTilesPerCall`));
    new MonarchAttention({ ...opts, maxWorkspaceBytes: need }).dispose();
    // queryTilesPerCall 1 shrinks the workspace by A = 4 and fits again.
    new MonarchAttention({ ...opts, maxWorkspaceBytes: need - 1, queryTilesPerCall: 1 }).dispose();
  });

  test('kind and range errors', () => {
    expect(() => new MonarchAttention({ ...opts, maxWorkspaceBytes: '1e9' as never })).toThrow(TypeError);
    expect(() => new MonarchAttention({ ...opts, maxWorkspaceBytes: 0 })).toThrow(/maxWorkspaceBytes 0 is out of range >= 1/);
    expect(() => new MonarchAttention({ ...opts, maxWorkspaceBytes: 1.5 })).toThrow(TypeError);
  });

  test('createKVCache checks the cache memory (K/V of every frame) against the same budget', () => {
    const causal: MonarchOptions = { ...opts, causal: { chunkFrames: 1 }, queryTilesPerCall: 1 };
    const a = new MonarchAttention(causal);
    const need = a.config.workspaceBytes;
    a.dispose();
    const b = new MonarchAttention({ ...causal, maxWorkspaceBytes: need });
    try {
      expect(() => b.createKVCache()).toThrow(/KV cache \(cache \d+ \+ workspace .*more than maxWorkspaceBytes/);
    } finally {
      b.dispose();
    }
    const c = new MonarchAttention({ ...causal, maxWorkspaceBytes: 10 * need });
    c.createKVCache().dispose();
    c.dispose();
  });

  test('the native Plan refuses a workspace over its budget before allocating, naming both', () => {
    const P = native().Plan;
    const o = { backend: 'cpu' as const, dtype: 0 as const, B: 1, H: 1024, D: 512, b1: 4096, b2: 4096, maxAq: 8, maxFk: 8, iterative: true, threads: 0 };
    expect(() => new P({ ...o, maxWorkspaceBytes: 2 ** 40 })).toThrow(/Plan options: workspace of \d+ bytes .* exceeds maxWorkspaceBytes 1099511627776/);
    expect(() => new P({ ...o, maxWorkspaceBytes: 0 })).toThrow(/maxWorkspaceBytes/);
  });
});

describe('native memory is visible to the garbage collector', () => {
  // V8 exposes no public counter of napi_adjust_external_memory (Node 20's heap statistics leave it out),
  // so this is checked by its effect: collection under pressure.
  test('instances dropped without dispose() are collected under pressure (child process, RSS bounded)', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'child', 'gc-pressure.js'), '20'], { encoding: 'utf8', timeout: 170_000 });
    if (r.status !== 0) throw new Error(`gc-pressure.js exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
    const s = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { instances: number; workspaceMB: number; rssStartMB: number; rssPeakMB: number };
    // 20 × 64 MB of touched workspace: ~1.3 GB if nothing were collected (measured without the
    // accounting: RSS peak +1.2 GB; with it: about +0.2 GB).
    expect(s.instances * s.workspaceMB).toBeGreaterThan(1200);
    expect(s.rssPeakMB - s.rssStartMB).toBeLessThan(600);
  }, 180_000);
});

describe('padding past the int32 token limit', () => {
  test('a sequence whose whole blocks exceed 2^31 - 1 tokens is refused before any map is built', () => {
    const t0 = Date.now();
    const rss0 = process.memoryUsage().rss;
    for (const blockSize of [2, 3, 65536])
      expect(() => new MonarchAttention({
        backend: 'cpu', layout: { kind: 'sequence', length: 2 ** 31 - 1, blockSize }, heads: 1, headDim: 1, maxWorkspaceBytes: 1e15,
      } as MonarchOptions)).toThrow(/layout\.length 2147483647 padded to whole blocks of layout\.blockSize .* more than 2\^31/);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * 2 ** 20);
  });
});
