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
