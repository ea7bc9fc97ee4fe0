// Stream interop: CUDA streams and events as bigint handles (cudaStream_t / cudaEvent_t), so that other
// CUDA code in the process (another addon, a model runtime) and our instances order their work on the
// GPU without any device-wide synchronisation:
//   - an instance's own stream is readable (`attn.stream`, `cache.stream`, `pool.stream`), or the
//     instance enqueues on a caller's stream (MonarchOptions.stream / DenseOptions.stream);
//   - a call can wait for a caller's event before its first op and record one after its last op
//     (ForwardOptions.waitEvent / recordEvent), so other streams can chain on it before the Promise
//     resolves;
//   - CudaStream / CudaEvent are small addon-owned helpers for code that has no CUDA library of its own
//     (Node has none): the examples and tests use them, a model runtime passes its own handles.
// The addon cannot check that a handle really is a live stream / event of the instance's device: that is
// the caller's contract (docs/API.md "Stream interop").
import './dispose';
import { native, type NativeCudaEvent, type NativeCudaStream } from './native';
import type { HostTensor } from './types';
import type { Op } from './ops';
import { DeviceTensor, deviceBuffer } from './device';
import { checkHostTensor } from './tensor';
import { show, snapshot } from './validate';
import { checkDevice, deviceCount } from './devices';

const MAX_HANDLE = (1n << 64n) - 1n;

/**
 * Validates a handle option: TypeError when not a bigint, RangeError when 0n, negative or wider than
 * 64 bits; `cuda` false (the CPU backend has no streams) → TypeError. Messages name the option.
 */
export function checkHandle(name: string, value: unknown, cuda: boolean): bigint | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'bigint') throw new TypeError(`${name} must be a bigint CUDA handle, received ${show(value)}`);
  if (value <= 0n || value > MAX_HANDLE) throw new RangeError(`${name} ${value}n must be a non-zero 64-bit unsigned handle`);
  if (!cuda) throw new TypeError(`${name} needs the CUDA backend; the CPU backend has no streams or events`);
  return value;
}

/** The event options of one call, checked (see ForwardOptions.waitEvent / recordEvent). */
export interface CallEvents { waitEvent?: bigint; recordEvent?: bigint }

export function checkCallEvents(o: Record<string, unknown>, cuda: boolean): CallEvents {
  return { waitEvent: checkHandle('waitEvent', o.waitEvent, cuda), recordEvent: checkHandle('recordEvent', o.recordEvent, cuda) };
}

/** A call's ops bracketed by its event options: [wait, ...ops, record]. */
export function withEvents(ops: Op[], ev: CallEvents | undefined): Op[] {
  if (!ev || (ev.waitEvent === undefined && ev.recordEvent === undefined)) return ops;
  return [
    ...(ev.waitEvent !== undefined ? [{ op: 'waitEvent', event: ev.waitEvent } as Op] : []),
    ...ops,
    ...(ev.recordEvent !== undefined ? [{ op: 'recordEvent', event: ev.recordEvent } as Op] : []),
  ];
}

function gpuOption(options: unknown): number {
  const o = snapshot('options', options, ['device'], true);
  if (o.device === undefined) return 0;
  const n = deviceCount();
  return checkDevice('device', o.device, n > 0 ? 'cuda' : 'cpu', n);
}

function checkCopy(name: string, dst: DeviceTensor, src: HostTensor, device: number): void {
  if (!(dst instanceof DeviceTensor)) throw new TypeError(`${name}: the device side must be a DeviceTensor, received ${show(dst)}`);
  checkHostTensor('host', src);
  if (dst.device !== device) throw new RangeError(`${name}: the DeviceTensor is on device ${dst.device} but the CudaStream is on device ${device}`);
  if (src.dtype !== dst.dtype) throw new TypeError(`${name}: host.dtype '${src.dtype}' must equal the DeviceTensor's dtype '${dst.dtype}'`);
  if (src.shape.length !== dst.shape.length || src.shape.some((d, i) => d !== dst.shape[i])) {
    throw new RangeError(`${name}: host.shape [${src.shape.join(', ')}] must equal the DeviceTensor's shape [${dst.shape.join(', ')}]`);
  }
}

/**
 * A CUDA stream owned by the addon (non-blocking with respect to the legacy default stream). Its
 * `handle` can be given to MonarchOptions.stream / DenseOptions.stream or to other CUDA code. It must
 * outlive every instance that enqueues on it. CUDA only ("CUDA backend unavailable" otherwise).
 */
export class CudaStream {
  private readonly s: NativeCudaStream;
  /** The GPU of the stream. */
  readonly device: number;

  /** `options.device`: the GPU (default 0; as MonarchOptions.device). */
  constructor(options?: { device?: number }) {
    this.device = gpuOption(options);
    this.s = new (native().CudaStream)(this.device);
  }

  /** The cudaStream_t as a bigint. */
  get handle(): bigint { return this.s.handle; }
  get disposed(): boolean { return this.s.disposed; }

  /**
   * Enqueues a copy of `src` into `dst` on this stream and returns at once. `src` must be allocTensor()
   * memory (page-locked: a truly asynchronous copy; the addon keeps it alive until a later synchronize).
   */
  upload(dst: DeviceTensor, src: HostTensor): void {
    checkCopy('upload', dst, src, this.device);
    this.s.upload(deviceBuffer(dst), src.data);
  }

  /** Enqueues a copy of `src` into `dst` (allocTensor() memory; valid after a later synchronize). */
  download(dst: HostTensor, src: DeviceTensor): void {
    checkCopy('download', src, dst, this.device);
    this.s.download(dst.data, deviceBuffer(src));
  }

  /** Waits on this thread for the work enqueued so far (blocks the event loop; see synchronizeAsync). */
  synchronize(): void { this.s.synchronize(); }

  /** Resolves when the work enqueued so far has completed (waits on a libuv thread). */
  synchronizeAsync(): Promise<void> { return this.s.synchronizeAsync(); }

  /** Synchronises, then destroys the stream. Idempotent; later use throws "CudaStream was disposed". */
  dispose(): void { this.s.dispose(); }
  [Symbol.dispose](): void { this.dispose(); }
}

/**
 * A CUDA event owned by the addon (cudaEventDisableTiming). `record(stream)` marks the work enqueued on
 * `stream` so far; `wait(stream)` makes work enqueued on `stream` later wait for the last record, on the
 * GPU, without the host waiting. Its `handle` goes to ForwardOptions.waitEvent / recordEvent.
 */
export class CudaEvent {
  private readonly e: NativeCudaEvent;
  /** The GPU of the event: record it only on streams of that device (waits may be on any device's stream). */
  readonly device: number;

  /** `options.device`: the GPU (default 0). */
  constructor(options?: { device?: number }) {
    this.device = gpuOption(options);
    this.e = new (native().CudaEvent)(this.device);
  }

  get handle(): bigint { return this.e.handle; }
  get disposed(): boolean { return this.e.disposed; }

  /** Records the event on `stream` (a bigint handle: CudaStream.handle, attn.stream, another library's stream). */
  record(stream: bigint): void {
    this.e.record(checkHandle('stream', stream, true)!);
  }

  /** Work enqueued on `stream` after this call waits for the event's last record (GPU-side). */
  wait(stream: bigint): void {
    this.e.wait(checkHandle('stream', stream, true)!);
  }

  /** Waits on this thread until the last recorded work has completed. */
  synchronize(): void { this.e.synchronize(); }

  /** True when the last recorded work has completed (or the event was never recorded). */
  query(): boolean { return this.e.query(); }

  /** Destroys the event (legal with recorded work pending). Idempotent. */
  dispose(): void { this.e.dispose(); }
  [Symbol.dispose](): void { this.dispose(); }
}
