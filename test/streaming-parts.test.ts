// Parts of the example streaming server: the fair gate (limit, FIFO rotation across sessions, run-time
// limit changes, errors release the slot), the checksum worker pool (every dtype, against a direct
// float64 sum over the same values) and the stand-in worker's bf16 rounding (against the addon's).
import { fromBfloat16, fromFloat16, tensor, toBfloat16, toFloat16 } from '../lib';
import { ChecksumPool } from '../examples/streaming-server/checksum';
import { FairGate } from '../examples/streaming-server/gate';
import { bf16Bits } from '../examples/streaming-server/standin-worker';
import { Rng } from '../benchmarks/random';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('FairGate', () => {
  test('at most `limit` calls in flight; waiting sessions are served in strict rotation', async () => {
    const gate = new FairGate(2);
    let inFlight = 0, peak = 0;
    const order: string[] = [];
    const call = async (name: string): Promise<void> => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      order.push(name);
      await tick();
      inFlight--;
    };
    // 4 sessions × 5 sequential calls each, as the server's sessions issue them.
    const session = async (name: string): Promise<void> => { for (let i = 0; i < 5; i++) await gate.run(() => call(name)); };
    await Promise.all(['a', 'b', 'c', 'd'].map(session));
    expect(peak).toBe(2);
    expect(order).toHaveLength(20);
    // Strict rotation: every 4 consecutive admissions are the 4 sessions (none gets a second call before
    // every other waiting session got one).
    for (let i = 0; i + 4 <= order.length; i++) expect(new Set(order.slice(i, i + 4)).size).toBe(4);
    const st = gate.stats();
    expect(st).toMatchObject({ limit: 2, inFlight: 0, waiting: 0, calls: 20 });
    expect(st.maxWaiting).toBeLessThanOrEqual(3);
    expect(st.waited).toBeGreaterThan(0);
  });

  test('limit 0 admits everything; raising the limit admits waiters at once; a throwing call releases its slot', async () => {
    const gate = new FairGate(1);
    let release!: () => void;
    const held = gate.run(() => new Promise<void>((r) => { release = r; }));
    let second = false;
    const p2 = gate.run(async () => { second = true; });
    await tick();
    expect(second).toBe(false);
    gate.setLimit(0);
    await tick();
    expect(second).toBe(true);
    release();
    await Promise.all([held, p2]);
    gate.setLimit(1);
    await expect(gate.run(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(gate.run(async () => 7)).resolves.toBe(7);
    expect(gate.stats().inFlight).toBe(0);
    expect(() => gate.setLimit(-1)).toThrow(/inflight must be an integer in 0\.\.1024/);
    expect(() => new FairGate(1.5)).toThrow(RangeError);
  });
});

describe('ChecksumPool', () => {
  let pool: ChecksumPool;
  beforeAll(() => { pool = new ChecksumPool(2); });
  afterAll(async () => { await pool.close(); });

  const direct = (x: Float32Array): { sum: number; sumSq: number } => {
    let sum = 0, sumSq = 0;
    for (const v of x) { sum += v; sumSq += v * v; }
    return { sum, sumSq };
  };

  test.each(['float32', 'bfloat16', 'float16'] as const)('%s: equals the float64 sum over the stored values; the buffer is transferred', async (dtype) => {
    const rng = new Rng(11), n = 1003;
    const f = Float32Array.from({ length: n }, () => 3 * rng.normal());
    f[5] = -0; f[6] = 65504; f[7] = 1e-7;  // signed zero, float16 max, a float16 subnormal
    const t = dtype === 'float32' ? tensor(f.slice(), [n]) : dtype === 'bfloat16' ? tensor(toBfloat16(f), [n], 'bfloat16') : tensor(toFloat16(f), [n], 'float16');
    const stored = dtype === 'float32' ? f : dtype === 'bfloat16' ? fromBfloat16(t.data as Uint16Array) : fromFloat16(t.data as Uint16Array);
    const want = direct(stored);
    const got = await pool.checksum(t);
    expect(got).toEqual(want);
    expect(t.data.byteLength).toBe(0);  // detached: transferred, not copied
  });

  test('a subarray view sums only its elements; checksums run concurrently', async () => {
    const base = Float32Array.from({ length: 100 }, (_, i) => i);
    const view = tensor(base.subarray(10, 20), [10]);
    const others = Array.from({ length: 6 }, (_, i) => pool.checksum(tensor(Float32Array.from({ length: 50 }, () => i), [50])));
    expect(await pool.checksum(view)).toEqual({ sum: 145, sumSq: direct(Float32Array.from({ length: 10 }, (_, i) => 10 + i)).sumSq });
    expect((await Promise.all(others)).map((c) => c.sum)).toEqual([0, 50, 100, 150, 200, 250]);
  });

  test('a closed pool rejects', async () => {
    const p = new ChecksumPool(1);
    await p.close();
    await expect(p.checksum(tensor(new Float32Array(1), [1]))).rejects.toThrow('checksum pool was closed');
  });
});

test('stand-in worker bf16 rounding equals the addon\'s toBfloat16 (ties, NaN, ±Inf, subnormals)', () => {
  const rng = new Rng(3);
  const x = Float32Array.from({ length: 4096 }, () => rng.normal() * 10 ** Math.floor(rng.uniform() * 8 - 4));
  const u = new Uint32Array(x.buffer);
  u[0] = 0x3f808000; u[1] = 0x3f818000; u[2] = 0x7fc00001; u[3] = 0xff800000; u[4] = 0x00000001; u[5] = 0x7f7fffff; u[6] = 0xffa00000;
  const want = toBfloat16(x), got = bf16Bits(x);
  for (let i = 0; i < x.length; i++) {
    const nan = (u[i] & 0x7fffffff) > 0x7f800000;
    if (nan) expect(got[i] & 0x7fff).toBeGreaterThan(0x7f80);
    else if (got[i] !== want[i]) throw new Error(`index ${i}: bits ${u[i].toString(16)} → ${got[i].toString(16)}, addon ${want[i].toString(16)}`);
  }
});
