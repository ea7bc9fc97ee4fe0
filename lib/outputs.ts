// Device outputs without `out`: a forward / attend on DeviceTensors returns a new DeviceTensor the caller
// owns. Its memory comes from the instance's DeviceOutputPool, and dispose() gives it back there instead
// of freeing it, so a server that disposes each output once it is done with it runs forward after
// forward without a cudaMalloc (or the implicit device synchronisation of cudaFree). An output that is
// never disposed is freed by the garbage collector as before. Idle buffers are kept per byte size, a few
// each; the pool frees them when its instance is disposed.
import { native, type NativeDeviceBuffer } from './native';

/** The pool's view of a device buffer (NativeDeviceBuffer, or a test double). */
export type PooledBuffer = Pick<NativeDeviceBuffer, 'byteLength' | 'disposed' | 'dispose'>;

export class DeviceOutputPool<B extends PooledBuffer = NativeDeviceBuffer> {
  private readonly idle = new Map<number, B[]>();
  private closed = false;

  /**
   * `maxIdle`: idle buffers kept per byte size; `alloc`: how a new buffer is made; `maxIdleBytes`: idle
   * bytes kept in all (what MonarchOptions.maxWorkspaceBytes leaves after the instance's own buffers; a
   * buffer given back past it is freed).
   */
  constructor(private readonly maxIdle = 4,
    private readonly alloc: (bytes: number) => B = (bytes) => native().DeviceBuffer.alloc(bytes) as unknown as B,
    private readonly maxIdleBytes = Infinity) {}

  /** An idle buffer of exactly `bytes` bytes, or a new one. */
  take(bytes: number): B {
    const list = this.idle.get(bytes);
    if (list && list.length > 0) return list.pop()!;
    return this.alloc(bytes);
  }

  /** Returns a buffer (kept for reuse, or freed when the pool is closed or already holds maxIdle of its size). */
  give(buf: B): void {
    if (buf.disposed) return;
    const list = this.idle.get(buf.byteLength) ?? [];
    if (this.closed || list.length >= this.maxIdle || this.bytes + buf.byteLength > this.maxIdleBytes) {
      buf.dispose();
      return;
    }
    list.push(buf);
    this.idle.set(buf.byteLength, list);
  }

  /** Bytes held by idle buffers. */
  get bytes(): number {
    let b = 0;
    for (const [size, list] of this.idle) b += size * list.length;
    return b;
  }

  /** Frees the idle buffers; buffers given back later are freed at once. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const b of list) if (!b.disposed) b.dispose();
    this.idle.clear();
  }
}

// Host outputs with MonarchOptions.hostOutputs 'pooled': a forward / attend on host tensors without
// `out` returns a tensor over a buffer of the instance's HostOutputPool (addon memory, page-locked on a
// GPU machine, so the stream's download lands in it directly), and the tensor's dispose() gives the
// buffer back for the next call. The same JS ArrayBuffer is handed out again: a new 100 MB ArrayBuffer
// per call (the 'fresh' default) costs the main thread a major garbage collection and, inside those
// pauses, freeing the previous outputs (benchmarks/notes/host-path.md). Addon memory is reference-counted
// natively, so a stale reference kept past dispose() can at worst read a later call's values, never
// crash the process. An output never disposed is freed by the garbage collector (the next call then
// allocates a new buffer: the expensive case this mode exists to avoid).

/** Process-wide counters of every HostOutputPool (merged into memoryStats()). */
export const hostOutputCounters = { hostOutputAllocations: 0, hostOutputReuses: 0 };

export type HostOutputArray = Float32Array | Uint16Array;

export class HostOutputPool {
  private readonly idle = new Map<string, HostOutputArray[]>();
  private readonly lent = new WeakSet<HostOutputArray>();
  private closed = false;

  /**
   * `maxIdle`: idle buffers kept per (dtype, length); `alloc`: how a new buffer is made (addon memory,
   * not zeroed: every byte is written before the caller sees it); `maxIdleBytes`: idle bytes kept in all
   * (what MonarchOptions.maxWorkspaceBytes leaves after the instance's own buffers).
   */
  constructor(private readonly alloc: (f32: boolean, n: number) => HostOutputArray,
    private readonly maxIdle = 2, private readonly maxIdleBytes = Infinity) {}

  /** An idle buffer of `n` elements (Float32Array when f32, else Uint16Array), or a new one. */
  take(f32: boolean, n: number): HostOutputArray {
    const list = this.idle.get(key(f32, n));
    const a = list && list.length > 0 ? list.pop()! : undefined;
    if (a) hostOutputCounters.hostOutputReuses++;
    const b = a ?? this.alloc(f32, n);
    if (!a) hostOutputCounters.hostOutputAllocations++;
    this.lent.add(b);
    return b;
  }

  /** Gives a lent buffer back (idempotent: a buffer not lent out is ignored). Kept unless the pool is full or closed. */
  give(a: HostOutputArray): void {
    if (!this.lent.has(a)) return;
    this.lent.delete(a);
    const k = key(a instanceof Float32Array || a.BYTES_PER_ELEMENT === 4, a.length);
    const list = this.idle.get(k) ?? [];
    if (this.closed || list.length >= this.maxIdle || this.bytes + a.byteLength > this.maxIdleBytes) return;  // the GC frees it
    list.push(a);
    this.idle.set(k, list);
  }

  /** Bytes held by idle buffers. */
  get bytes(): number {
    let b = 0;
    for (const list of this.idle.values()) for (const a of list) b += a.byteLength;
    return b;
  }

  /** Drops the idle buffers (freed by the garbage collector); buffers given back later are dropped too. */
  close(): void {
    this.closed = true;
    this.idle.clear();
  }
}

function key(f32: boolean, n: number): string {
  return `${f32 ? 'f32' : 'u16'}:${n}`;
}
