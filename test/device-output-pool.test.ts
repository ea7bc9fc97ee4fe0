// DeviceOutputPool (lib/outputs.ts) with test-double buffers: reuse by exact size, the per-size cap,
// freeing on close and after it, and never handing out a disposed buffer.
import { DeviceOutputPool } from '../lib/outputs';

class FakeBuffer {
  disposed = false;
  constructor(readonly byteLength: number, readonly id: number) {}
  dispose(): void {
    if (this.disposed) throw new Error('double dispose');
    this.disposed = true;
  }
}

function pool(maxIdle = 2): { p: DeviceOutputPool<FakeBuffer>; made: FakeBuffer[] } {
  const made: FakeBuffer[] = [];
  const p = new DeviceOutputPool<FakeBuffer>(maxIdle, (bytes) => { const b = new FakeBuffer(bytes, made.length); made.push(b); return b; });
  return { p, made };
}

test('a given-back buffer is reused for the same size only; idle bytes are reported', () => {
  const { p, made } = pool();
  const a = p.take(64);
  p.give(a);
  expect(p.bytes).toBe(64);
  expect(p.take(32)).not.toBe(a);
  expect(p.take(64)).toBe(a);
  expect(p.bytes).toBe(0);
  expect(made).toHaveLength(2);
});

test('at most maxIdle per size are kept; the rest are freed', () => {
  const { p } = pool(2);
  const bs = [p.take(16), p.take(16), p.take(16)];
  bs.forEach((b) => p.give(b));
  expect(bs.map((b) => b.disposed)).toEqual([false, false, true]);
  expect(p.bytes).toBe(32);
});

test('close() frees the idle buffers and every buffer given back later; disposed buffers are ignored', () => {
  const { p } = pool();
  const [a, b, c] = [p.take(8), p.take(8), p.take(8)];
  p.give(a);
  c.dispose();
  p.give(c);  // already freed by its owner: not kept
  expect(p.bytes).toBe(8);
  p.close();
  expect(a.disposed).toBe(true);
  p.give(b);
  expect(b.disposed).toBe(true);
  expect(p.bytes).toBe(0);
});

test('idle bytes stay within maxIdleBytes (what maxWorkspaceBytes leaves): a buffer past it is freed', () => {
  const made: FakeBuffer[] = [];
  const p = new DeviceOutputPool<FakeBuffer>(4, (bytes) => { const b = new FakeBuffer(bytes, made.length); made.push(b); return b; }, 100);
  const [a, b, c] = [p.take(40), p.take(40), p.take(30)];
  p.give(a);
  p.give(b);
  p.give(c);  // 80 + 30 > 100: freed
  expect([a.disposed, b.disposed, c.disposed]).toEqual([false, false, true]);
  expect(p.bytes).toBe(80);
  expect(p.take(40)).toBe(b);
});
