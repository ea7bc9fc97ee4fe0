// DeviceTensor: a typed view (shape, dtype) over a NativeDeviceBuffer (GPU memory owned by the addon,
// freed by dispose() or by the addon's finalizer; fromPointer wrappers never free).
import { native, type NativeDeviceBuffer } from './native';
import type { DType, HostTensor } from './types';
import { checkHostTensor, localArray, checkShape, dtypeCode, dtypeSize, numel, readOnce, tensor, DTYPES } from './tensor';
import { show, snapshot } from './validate';
import { checkDevice, deviceCount } from './devices';

/** Options of DeviceTensor's static constructors. */
export interface DeviceTensorOptions {
  /** The GPU (0..deviceCount−1). Default 0; fromPointer: the pointer's device as CUDA reports it, else 0. */
  device?: number;
}

function deviceOption(opts: unknown): number | undefined {
  const o = snapshot('options', opts, ['device'], true);
  return o.device === undefined ? undefined : checkDevice('device', o.device, 'cuda', deviceCount());
}

const buffers = new WeakMap<DeviceTensor, NativeDeviceBuffer>();
/** Outputs whose memory goes back to their instance's DeviceOutputPool on dispose() (lib/outputs.ts). */
const recyclers = new WeakMap<DeviceTensor, (buf: NativeDeviceBuffer) => void>();
/** Recycled tensors: disposed for their user, although the buffer lives on in the pool. */
const released = new WeakSet<DeviceTensor>();

function checkDeviceDtype(dtype: unknown): DType {
  if (typeof dtype !== 'string') throw new TypeError(`dtype must be one of 'float32', 'float16', 'bfloat16', received ${show(dtype)}`);
  if (!(DTYPES as readonly string[]).includes(dtype)) throw new RangeError(`dtype ${show(dtype)} is not one of 'float32', 'float16', 'bfloat16'`);
  return dtype as DType;
}

function requireCuda(): void {
  const i = native().info();
  if (!i.compiledWithCuda || i.deviceCount < 1) {
    throw new Error(`CUDA backend unavailable: ${i.compiledWithCuda ? i.cudaMessage : 'the addon was built without CUDA'}`);
  }
}

/** A tensor in GPU memory (CUDA backend). Contiguous, row-major in `shape` order. */
export class DeviceTensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly byteLength: number;

  private constructor(buf: NativeDeviceBuffer, shape: number[], dtype: DType) {
    this.shape = Object.freeze(shape);
    this.dtype = dtype;
    this.byteLength = numel(shape) * dtypeSize(dtype);
    buffers.set(this, buf);
  }

  /** Allocates device memory (on options.device, default 0) and uploads t (synchronous). */
  static fromHost(t: HostTensor, options?: DeviceTensorOptions): DeviceTensor {
    t = readOnce(t);
    checkHostTensor('t', t);
    const d = DeviceTensor.empty(t.shape.slice(), t.dtype, options);
    buffers.get(d)!.upload(t.data);
    return d;
  }

  /** Uninitialised device memory of `shape` and `dtype` on options.device (default 0). */
  static empty(shape: readonly number[], dtype: DType, options?: DeviceTensorOptions): DeviceTensor {
    const shp = checkShape('shape', shape);
    const dt = checkDeviceDtype(dtype);
    requireCuda();
    const device = deviceOption(options) ?? 0;
    return new DeviceTensor(native().DeviceBuffer.alloc(numel(shp) * dtypeSize(dt), device), shp, dt);
  }

  /** Wraps device memory owned elsewhere (zero-copy); dispose() does not free it. */
  static fromPointer(ptr: bigint, shape: readonly number[], dtype: DType, options?: DeviceTensorOptions): DeviceTensor {
    if (typeof ptr !== 'bigint') throw new TypeError(`ptr must be a bigint, received ${show(ptr)}`);
    if (ptr <= 0n) throw new RangeError(`ptr ${ptr} must be a non-null device address`);
    const shp = checkShape('shape', shape);
    const dt = checkDeviceDtype(dtype);
    requireCuda();
    const device = deviceOption(options);
    return new DeviceTensor(native().DeviceBuffer.fromPointer(ptr, numel(shp) * dtypeSize(dt), device), shp, dt);
  }

  /** The GPU holding the memory (the `device` option of the constructor that made it). */
  get device(): number {
    return buffers.get(this)!.device;
  }

  get disposed(): boolean {
    return released.has(this) || buffers.get(this)!.disposed;
  }

  /** Device address, for interop. */
  get pointer(): bigint {
    return live(this).pointer;
  }

  /** Copies to host memory off the event loop. */
  async download(): Promise<HostTensor> {
    const data = await live(this).download(this.dtype === 'float32' ? 'f32' : 'u16');
    return tensor(localArray(data), this.shape, this.dtype);
  }

  downloadSync(): HostTensor {
    return tensor(localArray(live(this).downloadSync(this.dtype === 'float32' ? 'f32' : 'u16')), this.shape, this.dtype);
  }

  /** Overwrites the contents with t (same shape and dtype; synchronous). */
  upload(t: HostTensor): void {
    const buf = live(this);
    t = readOnce(t);
    checkHostTensor('t', t);
    if (t.dtype !== this.dtype) throw new TypeError(`t.dtype '${t.dtype}' must equal the DeviceTensor's dtype '${this.dtype}'`);
    if (t.shape.length !== this.shape.length || t.shape.some((d, i) => d !== this.shape[i])) {
      throw new RangeError(`t.shape [${t.shape.join(', ')}] must equal the DeviceTensor's shape [${this.shape.join(', ')}]`);
    }
    buf.upload(t.data);
  }

  /** Sets every element to `value` converted to the dtype (e.g. NaN poisoning). */
  fill(value: number): void {
    const buf = live(this);
    if (typeof value !== 'number') throw new TypeError(`value must be a number, received ${show(value)}`);
    buf.fill(value, dtypeCode(this.dtype));
  }

  /**
   * Frees the memory (owned tensors; an output of forward / attend goes back to its instance for reuse
   * by a later output, see docs/API.md); later use throws "DeviceTensor was disposed". Idempotent.
   */
  dispose(): void {
    const buf = buffers.get(this)!;
    if (released.has(this) || buf.disposed) return;
    const recycle = recyclers.get(this);
    if (recycle) {
      released.add(this);
      recycle(buf);
      return;
    }
    buf.dispose();
  }
}

function live(t: DeviceTensor): NativeDeviceBuffer {
  const buf = buffers.get(t);
  if (!buf) throw new TypeError('not a DeviceTensor');
  if (buf.disposed || released.has(t)) throw new Error('DeviceTensor was disposed');
  return buf;
}

/** The live native buffer behind a DeviceTensor (internal). */
export function deviceBuffer(t: DeviceTensor): NativeDeviceBuffer {
  return live(t);
}

/** A non-owning view of `byteLength` bytes at `byteOffset` into a device buffer (internal). */
export function bufferView(buf: NativeDeviceBuffer, byteOffset: number, byteLength: number): NativeDeviceBuffer {
  if (byteOffset === 0 && byteLength === buf.byteLength) return buf;
  if (byteOffset < 0 || byteOffset + byteLength > buf.byteLength) {
    throw new RangeError(`internal: view [${byteOffset}, ${byteOffset + byteLength}) outside a buffer of ${buf.byteLength} bytes`);
  }
  return native().DeviceBuffer.fromPointer(buf.pointer + BigInt(byteOffset), byteLength, buf.device);
}

/**
 * Wraps a native buffer as a DeviceTensor (internal: outputs created by lib/). With `recycle`, dispose()
 * hands the buffer to it instead of freeing it.
 */
export function wrapBuffer(buf: NativeDeviceBuffer, shape: number[], dtype: DType, recycle?: (buf: NativeDeviceBuffer) => void): DeviceTensor {
  const Ctor = DeviceTensor as unknown as new (b: NativeDeviceBuffer, s: number[], d: DType) => DeviceTensor;
  const t = new Ctor(buf, shape, dtype);
  if (recycle) recyclers.set(t, recycle);
  return t;
}
