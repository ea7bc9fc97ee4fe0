// Stream interop options without a GPU: every handle option (MonarchOptions.stream, DenseOptions.stream,
// waitEvent / recordEvent of forward, dense and KV calls) rejects a non-bigint with a TypeError and 0n,
// negative or wider-than-64-bit values with a RangeError, naming the option; on the CPU backend a valid
// handle is a TypeError saying it needs CUDA; `stream` getters are null on the CPU; the event ops land
// first / last in a call's op list; an idle WorkQueue starts its job inside run().
import { cudaAvailable } from './helpers/backend';
import { allocTensor, CudaEvent, CudaStream, denseAttention, denseAttentionSync, MonarchAttention } from './helpers/pkg';
import { withEvents, checkHandle } from '../lib/stream';
import { WorkQueue, type Op } from '../lib/ops';
import { runExample } from '../examples/external-stream/main';

const H = 2, D = 8, S = 16;
const seq = { layout: { kind: 'sequence' as const, length: S, blockSize: 4 }, heads: H, headDim: D, backend: 'cpu' as const };
const video = { layout: { kind: 'video' as const, frames: 4, height: 4, width: 8 }, causal: { chunkFrames: 2 }, heads: H, headDim: D, backend: 'cpu' as const };
const CHUNK = 2 * 4 * 8;
const qkv = (s = S): ReturnType<typeof allocTensor>[] => [allocTensor([1, s, H, D]), allocTensor([1, s, H, D]), allocTensor([1, s, H, D])];

const BAD: Array<[unknown, ErrorConstructor, RegExp]> = [
  [1, TypeError, /must be a bigint CUDA handle, received 1/],
  ['0x10', TypeError, /must be a bigint CUDA handle, received "0x10"/],
  [0n, RangeError, /0n must be a non-zero 64-bit unsigned handle/],
  [-5n, RangeError, /-5n must be a non-zero 64-bit unsigned handle/],
  [1n << 64n, RangeError, /must be a non-zero 64-bit unsigned handle/],
];

describe('stream interop options (CPU)', () => {
  test('checkHandle: kinds, ranges, the CPU backend', () => {
    for (const [v, E, re] of BAD) {
      expect(() => checkHandle('stream', v, true)).toThrow(E);
      expect(() => checkHandle('stream', v, true)).toThrow(new RegExp(`^stream ${re.source.replace(/^/, '.*')}`));
    }
    expect(checkHandle('stream', undefined, false)).toBeUndefined();
    expect(checkHandle('stream', (1n << 64n) - 1n, true)).toBe((1n << 64n) - 1n);
    expect(() => checkHandle('waitEvent', 7n, false)).toThrow(TypeError);
    expect(() => checkHandle('waitEvent', 7n, false)).toThrow(/^waitEvent needs the CUDA backend/);
  });

  test('MonarchOptions.stream: bad values name the option; the CPU backend refuses a stream', () => {
    for (const [v, E, re] of BAD) {
      expect(() => new MonarchAttention({ ...seq, stream: v as bigint })).toThrow(E);
      expect(() => new MonarchAttention({ ...seq, stream: v as bigint })).toThrow(re);
    }
    expect(() => new MonarchAttention({ ...seq, stream: 0x1234n })).toThrow(/stream needs the CUDA backend/);
    const attn = new MonarchAttention(seq);
    expect(attn.stream).toBeNull();
    attn.dispose();
    expect(() => attn.stream).toThrow(/MonarchAttention was disposed/);
  });

  test('forward waitEvent / recordEvent: bad values name the option, async and sync', async () => {
    const attn = new MonarchAttention(seq);
    const [q, k, v] = qkv();
    for (const name of ['waitEvent', 'recordEvent']) {
      for (const [val, E, re] of BAD) {
        await expect(attn.forward(q, k, v, { [name]: val } as never)).rejects.toThrow(E);
        expect(() => attn.forwardSync(q, k, v, { [name]: val } as never)).toThrow(new RegExp(`${name} .*${re.source}|${re.source}`));
      }
      await expect(attn.forward(q, k, v, { [name]: 99n } as never)).rejects.toThrow(new RegExp(`^${name} needs the CUDA backend`));
    }
    await expect(attn.forward(q, k, v, {})).resolves.toBeDefined();
    attn.dispose();
  });

  test('dense stream / waitEvent / recordEvent', async () => {
    const [q, k, v] = qkv();
    for (const name of ['stream', 'waitEvent', 'recordEvent']) {
      for (const [val, E] of BAD) {
        await expect(denseAttention(q, k, v, { backend: 'cpu', [name]: val } as never)).rejects.toThrow(E);
        expect(() => denseAttentionSync(q, k, v, { backend: 'cpu', [name]: val } as never)).toThrow(new RegExp(`^${name}`));
      }
      expect(() => denseAttentionSync(q, k, v, { backend: 'cpu', [name]: 3n } as never)).toThrow(new RegExp(`^${name} needs the CUDA backend`));
    }
  });

  test('KV cache: stream getters are null; step / write / attend event options are checked', async () => {
    const attn = new MonarchAttention(video);
    const pool = attn.createKVCachePool({ layers: 2 });
    const cache = pool.layers[0];
    expect(pool.stream).toBeNull();
    expect(cache.stream).toBeNull();
    const [q, k, v] = qkv(CHUNK);
    await expect(cache.step(q, k, v, { waitEvent: 0n })).rejects.toThrow(RangeError);
    expect(() => cache.stepSync(q, k, v, { recordEvent: 5 as never })).toThrow(/^recordEvent must be a bigint/);
    await expect(cache.write(k, v, { frame: 0, recordEvent: 5n })).rejects.toThrow(/^recordEvent needs the CUDA backend/);
    await expect(cache.attend(q, { frame: 0, waitEvent: 5n })).rejects.toThrow(/^waitEvent needs the CUDA backend/);
    expect(cache.nextFrame).toBe(0);  // nothing ran
    await pool.close();
    expect(() => pool.stream).toThrow(/KVCachePool was disposed/);
    attn.dispose();
  });

  test('withEvents: the wait is the first op, the record the last; none → the same list', () => {
    const body: Op[] = [{ op: 'download', dst: new Uint8Array(1), src: {} as never }];
    expect(withEvents(body, undefined)).toBe(body);
    expect(withEvents(body, {})).toBe(body);
    expect(withEvents(body, { waitEvent: 7n, recordEvent: 9n }).map((o) => o.op)).toEqual(['waitEvent', 'download', 'recordEvent']);
    expect(withEvents(body, { recordEvent: 9n }).map((o) => o.op)).toEqual(['download', 'recordEvent']);
  });

  test('WorkQueue: an idle queue starts the job inside run(), a busy one after the earlier jobs', async () => {
    const q = new WorkQueue();
    const order: string[] = [];
    let release!: () => void;
    const first = q.run(async () => { order.push('a start'); await new Promise<void>((r) => { release = r; }); order.push('a end'); });
    expect(order).toEqual(['a start']);  // started synchronously
    const second = q.run(async () => { order.push('b start'); });
    await Promise.resolve();
    expect(order).toEqual(['a start']);  // waits for a
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['a start', 'a end', 'b start']);
    expect(q.busy).toBe(false);
    const failing = q.run(async () => { throw new Error('boom'); });
    await expect(failing).rejects.toThrow('boom');
    expect(q.busy).toBe(false);
  });

  (cudaAvailable() ? test.skip : test)('CudaStream / CudaEvent without a GPU: "CUDA backend unavailable"; the example skips', async () => {
    expect(() => new CudaStream()).toThrow(/CudaStream: CUDA backend unavailable/);
    expect(() => new CudaEvent()).toThrow(/CudaEvent: CUDA backend unavailable/);
    expect((await runExample()).skipped).toMatch(/^needs a GPU/);
  });
});
