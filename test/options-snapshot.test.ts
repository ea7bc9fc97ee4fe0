// Option objects (issue 8, item 3): read once (a getter or Proxy cannot make an instance run a
// configuration other than the validated one), unknown keys (typos) rejected with a TypeError naming the
// key and the closest valid one, for MonarchOptions (+ layout, causal), ForwardOptions, DenseOptions and
// TimeOptions.
import { MonarchAttention, denseAttentionSync, info, tensor } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { randAct, toHost } from './helpers/tensors';

const base = (): MonarchOptions => ({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 2, headDim: 8, backend: 'cpu' });

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an exception, nothing was thrown');
}

describe('unknown option keys → TypeError naming the key and a suggestion', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['MonarchOptions numIter', () => new MonarchAttention({ ...base(), numIter: 2 } as unknown as MonarchOptions), /options\.numIter is not a known option; did you mean 'numIters'\?/],
    ['MonarchOptions headdim', () => new MonarchAttention({ ...base(), headdim: 8 } as unknown as MonarchOptions), /options\.headdim .*did you mean 'headDim'/],
    ['MonarchOptions maxWorkspaceByte', () => new MonarchAttention({ ...base(), maxWorkspaceByte: 1 } as unknown as MonarchOptions), /did you mean 'maxWorkspaceBytes'/],
    ['layout blocksize', () => new MonarchAttention({ ...base(), layout: { kind: 'sequence', length: 8, blocksize: 4 } } as unknown as MonarchOptions), /layout\.blocksize .*did you mean 'blockSize'/],
    ['video key on a sequence layout', () => new MonarchAttention({ ...base(), layout: { kind: 'sequence', length: 8, blockSize: 4, frames: 2 } } as unknown as MonarchOptions), /layout\.frames is not an option of a sequence layout/],
    ['causal chunkframes', () => new MonarchAttention({ ...base(), layout: { kind: 'video', frames: 2, height: 2, width: 2 }, causal: { chunkframes: 1 } } as unknown as MonarchOptions), /causal\.chunkframes .*did you mean 'chunkFrames'/],
    ['no suggestion for a far-off key', () => new MonarchAttention({ ...base(), zzzzzzzz: 1 } as unknown as MonarchOptions), /options\.zzzzzzzz is not a known option \(known: layout, heads/],
  ];
  test.each(cases)('%s', (_name, fn, pattern) => {
    const e = thrown(fn);
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(pattern);
  });

  test('ForwardOptions, DenseOptions and TimeOptions', () => {
    const rng = mulberry32(8101);
    const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 8, 2, 8)));
    const attn = new MonarchAttention(base());
    try {
      expect(thrown(() => attn.forwardSync(q, k, v, { keymask: new Uint8Array(8) } as never)).message).toMatch(/forward options\.keymask .*did you mean 'keyMask'/);
      expect(thrown(() => attn.time([[q, k, v]], { iter: 2 } as never)).message).toMatch(/options\.iter .*did you mean 'iters'/);
    } finally {
      attn.dispose();
    }
    const e = thrown(() => denseAttentionSync(q, k, v, { returnLSE: true } as never));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/options\.returnLSE .*did you mean 'returnLse'/);
    expect(thrown(() => denseAttentionSync(q, k, v, { causalchunk: 4 } as never)).message).toMatch(/did you mean 'causalChunk'/);
  });
});

describe('options are read exactly once', () => {
  test('getters returning a different value on each read: the instance runs the first (validated) values', () => {
    const reads: Record<string, number> = {};
    const seq = (key: string, values: unknown[]) => ({
      get: () => { reads[key] = (reads[key] ?? 0) + 1; return values[Math.min(reads[key] - 1, values.length - 1)]; },
      enumerable: true,
    });
    const layout = Object.defineProperties({}, {
      kind: seq('kind', ['sequence', 'video']),
      length: seq('length', [8, 1e9]),
      blockSize: seq('blockSize', [4, 0]),
    });
    const opts = Object.defineProperties({}, {
      layout: { value: layout, enumerable: true },
      heads: seq('heads', [2, 0, 1e6]),
      headDim: seq('headDim', [8, 4096]),
      numIters: seq('numIters', [2, 99]),
      scale: seq('scale', [0.25, -1]),
      backend: { value: 'cpu', enumerable: true },
    });
    const attn = new MonarchAttention(opts as MonarchOptions);
    try {
      for (const key of ['kind', 'length', 'blockSize', 'heads', 'headDim', 'numIters', 'scale']) expect([key, reads[key]]).toEqual([key, 1]);
      expect(attn.config.heads).toBe(2);
      expect(attn.config.headDim).toBe(8);
      expect(attn.config.numIters).toBe(2);
      expect(attn.config.scale).toBe(0.25);
      expect(attn.config.layout).toEqual({ kind: 'sequence', length: 8, blockSize: 4 });
      const rng = mulberry32(8102);
      const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 8, 2, 8)));
      expect(attn.forwardSync(q, k, v).shape).toEqual([1, 8, 2, 8]);
    } finally {
      attn.dispose();
    }
  });

  test('a Proxy whose get trap changes its answers cannot smuggle in an unvalidated value', () => {
    let n = 0;
    const target = { ...base(), numIters: 1 } as Record<string, unknown>;
    const proxy = new Proxy(target, { get: (t, key) => (key === 'numIters' ? (++n === 1 ? 1 : 1000) : t[key as string]) });
    const attn = new MonarchAttention(proxy as unknown as MonarchOptions);
    try {
      expect(n).toBe(1);
      expect(attn.config.numIters).toBe(1);
    } finally {
      attn.dispose();
    }
  });

  test('mutating the caller\'s objects after construction changes nothing', () => {
    const o = base() as MonarchOptions & { layout: { length: number } };
    const attn = new MonarchAttention(o);
    try {
      o.layout.length = 4;
      o.heads = 7;
      expect(attn.config.layout).toEqual({ kind: 'sequence', length: 8, blockSize: 4 });
      expect(attn.numTokens).toBe(8);
      expect(attn.config.heads).toBe(2);
    } finally {
      attn.dispose();
    }
  });

  test('dense options: a getter is read once', () => {
    let reads = 0;
    const opts = Object.defineProperty({ backend: 'cpu' }, 'scale', { get: () => (++reads === 1 ? 0.5 : -1), enumerable: true });
    const rng = mulberry32(8103);
    const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 5, 1, 4)));
    denseAttentionSync(q, k, v, opts as never);
    expect(reads).toBe(1);
  });
});

describe('threads is per instance', () => {
  test('an instance with threads: 1 does not change the process-wide CPU thread count', () => {
    const before = info().cpuThreads;
    const attn = new MonarchAttention({ ...base(), threads: 1 });
    try {
      const rng = mulberry32(8104);
      const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 8, 2, 8)));
      attn.forwardSync(q, k, v);
      expect(info().cpuThreads).toBe(before);
    } finally {
      attn.dispose();
    }
  });

  test('instances with different thread counts give bit-identical results, sync and async, interleaved', async () => {
    const o: MonarchOptions = { layout: { kind: 'video', frames: 4, height: 6, width: 8, wReduce: 2 }, heads: 3, headDim: 16, numIters: 2, backend: 'cpu' };
    const one = new MonarchAttention({ ...o, threads: 1 });
    const two = new MonarchAttention({ ...o, threads: 2 });
    const all = new MonarchAttention(o);
    try {
      const rng = mulberry32(8105);
      const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 192, 3, 16)));
      const outs = await Promise.all([one.forward(q, k, v), two.forward(q, k, v), all.forward(q, k, v)]);
      const sync = one.forwardSync(q, k, v);
      for (const x of [...outs, sync]) expect(Array.from(x.data)).toEqual(Array.from(outs[0].data));
    } finally {
      [one, two, all].forEach((a) => a.dispose());
    }
  });
});

test('tensor() is unaffected (no options object)', () => {
  expect(tensor(new Float32Array(2), [2]).shape).toEqual([2]);
});

describe('prototype pollution is not configuration', () => {
  test('keys inherited from a polluted Object.prototype are ignored; own keys and class getters still count', () => {
    const proto = Object.prototype as Record<string, unknown>;
    const base = { backend: 'cpu' as const, layout: { kind: 'sequence' as const, length: 64, blockSize: 8 }, heads: 1, headDim: 4 };
    try {
      proto.scale = 100;
      proto.numIters = 3;
      const a = new MonarchAttention(base);
      try {
        expect(a.config.scale).toBeCloseTo(0.5, 12);
        expect(a.config.numIters).toBe(1);
      } finally {
        a.dispose();
      }
      const b = new MonarchAttention({ ...base, numIters: 2 });
      try {
        expect(b.config.numIters).toBe(2);
      } finally {
        b.dispose();
      }
    } finally {
      delete proto.scale;
      delete proto.numIters;
    }
    class Opts {
      backend = 'cpu' as const;
      layout = { kind: 'sequence' as const, length: 64, blockSize: 8 };
      heads = 1;
      headDim = 4;
      get numIters(): number { return 2; }
    }
    const c = new MonarchAttention(new Opts() as unknown as MonarchOptions);
    try {
      expect(c.config.numIters).toBe(2);
    } finally {
      c.dispose();
    }
  });
});
