// q/k/v checks (names the tensor and the dimension) and host/device staging shared by MonarchAttention,
// KVCache and dense attention.
import { native, type NativeAct, type NativeData, type NativeDeviceBuffer, type NativePlan, type Strides } from './native';
import { timeOps, type Op } from './ops';
import type { DType, HostTensor, TensorLayout } from './types';
import { DeviceTensor, bufferView, deviceBuffer, wrapBuffer } from './device';
import { addonArray } from './host';
import { localArray, actDims, actStrides, checkHostTensor, dimIndex, dtypeSize, numel, tensor, type ActDims } from './tensor';
import { show, isTyped, isErrorLike } from './validate';

export type AnyTensor = HostTensor | DeviceTensor;

/** Expected value of a dim and how to name it in a message (e.g. "heads 12" or "q.shape[2]=12"). */
type Want = { value: number; label: string } | undefined;

function checkOne(name: string, t: unknown, layout: TensorLayout, dtype: DType, dtypeLabel: string,
  want: Partial<Record<keyof ActDims, Want>>): { dims: ActDims; device: boolean } {
  const device = t instanceof DeviceTensor;
  if (!device) checkHostTensor(name, t);
  const tt = t as AnyTensor;
  if (tt.shape.length !== 4) {
    const order = layout === 'BSHD' ? '[batch, tokens, heads, headDim]' : '[batch, heads, tokens, headDim]';
    throw new RangeError(`${name}.shape [${tt.shape.join(', ')}] has ${tt.shape.length} dimensions, expected 4: ${order} (${layout})`);
  }
  if (tt.dtype !== dtype) throw new TypeError(`${name}.dtype '${tt.dtype}' must equal ${dtypeLabel} '${dtype}'`);
  const idx = dimIndex(layout);
  const dims = actDims(tt.shape, layout);
  for (const key of ['B', 'S', 'H', 'D'] as const) {
    const w = want[key];
    if (w && dims[key] !== w.value) throw new RangeError(`${name}.shape[${idx[key]}]=${dims[key]} must equal ${w.label}`);
  }
  return { dims, device };
}

export interface CheckedQKV { device: boolean; q: ActDims; k: ActDims }

/**
 * Checks q, k, v against the expected q dims (`qWant`, labelled by option name) and each other:
 * k, v share q's B, H, D (and S when `sameS`); v has k's S. All host tensors or all DeviceTensors.
 */
export function checkQKV(q: unknown, k: unknown, v: unknown, layout: TensorLayout, dtype: DType, dtypeLabel: string,
  qWant: Partial<Record<keyof ActDims, Want>>, sameS: boolean, kWant?: Partial<Record<keyof ActDims, Want>>): CheckedQKV {
  const cq = checkOne('q', q, layout, dtype, dtypeLabel, qWant);
  const idx = dimIndex(layout);
  const like = (key: keyof ActDims): Want => ({ value: cq.dims[key], label: `q.shape[${idx[key]}]=${cq.dims[key]}` });
  const ck = checkOne('k', k, layout, dtype, dtypeLabel, { B: like('B'), H: like('H'), D: like('D'), S: sameS ? like('S') : kWant?.S });
  const cv = checkOne('v', v, layout, dtype, dtypeLabel, {
    B: like('B'), H: like('H'), D: like('D'), S: { value: ck.dims.S, label: `k.shape[${idx.S}]=${ck.dims.S}` },
  });
  for (const [n, c] of [['k', ck], ['v', cv]] as const) {
    if (c.device !== cq.device) {
      throw new TypeError(`${n} is a ${c.device ? 'DeviceTensor' : 'HostTensor'} but q is a ${cq.device ? 'DeviceTensor' : 'HostTensor'}; pass q, k, v all on the host or all on the device`);
    }
  }
  return { device: cq.device, q: cq.dims, k: ck.dims };
}

/** Reusable buffers (host typed arrays on the CPU, device buffers on CUDA) keyed by purpose. */
export class Scratch {
  private readonly bufs = new Map<string, NativeData>();
  constructor(private readonly cuda: boolean) {}

  /** Bytes held. */
  get bytes(): number {
    let b = 0;
    for (const x of this.bufs.values()) b += x.byteLength;
    return b;
  }

  /** A buffer of `elems` elements of `dtype` ('float32' also for f32 side outputs). */
  get(key: string, dtype: DType, elems: number): NativeData {
    const bytes = elems * dtypeSize(dtype);
    const have = this.bufs.get(key);
    if (have && have.byteLength === bytes) return have;
    if (have && !(isTyped(have, 'Float32Array') || isTyped(have, 'Uint16Array'))) have.dispose();
    const b: NativeData = this.cuda ? native().DeviceBuffer.alloc(bytes) : addonArray(dtype, elems);
    this.bufs.set(key, b);
    return b;
  }

  dispose(): void {
    for (const b of this.bufs.values()) {
      if (!(isTyped(b, 'Float32Array') || isTyped(b, 'Uint16Array')) && !b.disposed) b.dispose();
    }
    this.bufs.clear();
  }
}

/** An activation argument. */
export function act(data: NativeData, strides: Strides): NativeAct {
  return { data, strides };
}

/** The data starting `elemOffset` elements in (CPU: a subarray view; CUDA: a non-owning device view). */
export function offsetView(data: NativeData, dtype: DType, elemOffset: number): NativeData {
  if (elemOffset === 0) return data;
  if (isTyped(data, 'Float32Array') || isTyped(data, 'Uint16Array')) return data.subarray(elemOffset);
  const off = elemOffset * dtypeSize(dtype);
  return bufferView(data as NativeDeviceBuffer, off, data.byteLength - off);
}

/** Contiguous BSHD strides of a [B][S][H][D] buffer. */
export function bshd(S: number, H: number, D: number): Strides {
  return [S * H * D, H * D, D];
}

/** Inputs on the backend's side plus an output buffer, and how to hand the output back. */
export interface Staged {
  q: NativeAct; k: NativeAct; v: NativeAct; o: NativeAct;
  /** Output as the caller gets it (after the work has finished). */
  collect(): AnyTensor;
  collectAsync(): Promise<AnyTensor>;
}

/**
 * Stages checked q/k/v for a backend: CPU host tensors are used in place; CUDA host tensors are uploaded
 * into scratch and the output downloaded; CUDA DeviceTensors are used in place and the output is a new
 * DeviceTensor. The output has q's shape, dtype and layout.
 */
export function stage(cuda: boolean, scratch: Scratch, layout: TensorLayout, c: CheckedQKV,
  q: AnyTensor, k: AnyTensor, v: AnyTensor, outBuffer?: NativeDeviceBuffer, outHost?: HostTensor): Staged {
  const dtype = q.dtype;
  const qs = actStrides(c.q, layout), ks = actStrides(c.k, layout);
  const shape = q.shape.slice();
  const n = numel(shape);
  if (c.device) {
    if (!cuda) throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
    const out = outBuffer ?? native().DeviceBuffer.alloc(n * dtypeSize(dtype));
    const result = (): AnyTensor => wrapBuffer(out, shape, dtype);
    return {
      q: act(deviceBuffer(q as DeviceTensor), qs), k: act(deviceBuffer(k as DeviceTensor), ks),
      v: act(deviceBuffer(v as DeviceTensor), ks), o: act(out, qs),
      collect: result, collectAsync: async () => result(),
    };
  }
  const hq = q as HostTensor, hk = k as HostTensor, hv = v as HostTensor;
  if (!cuda) {
    // Async: CPU workers write addon memory in place (an ordinary array would be copied in and back);
    // the caller gets an ordinary (transferable) copy made off the event loop. Sync: a fresh array.
    if (outHost && native().hostMemoryKind(outHost.data) !== 0) {
      // A caller's addon / shared array: written in place, handed back as is.
      return {
        q: act(hq.data, qs), k: act(hk.data, ks), v: act(hv.data, ks), o: act(outHost.data, qs),
        collect: () => outHost, collectAsync: async () => outHost,
      };
    }
    const out = scratch.get('stage.o', dtype, n) as Float32Array | Uint16Array;
    if (outHost) {
      // An ordinary array: copied into after the work (an Error if the caller detached it meanwhile).
      const fill = (): HostTensor => { native().copyHost(outHost.data, out); return outHost; };
      return {
        q: act(hq.data, qs), k: act(hk.data, ks), v: act(hv.data, ks), o: act(out, qs),
        collect: fill, collectAsync: async () => fill(),
      };
    }
    return {
      q: act(hq.data, qs), k: act(hk.data, ks), v: act(hv.data, ks), o: act(out, qs),
      collect: () => tensor(out.slice(), shape, dtype),
      collectAsync: async () => tensor(localArray(await native().cloneHostAsync(out)), shape, dtype),
    };
  }
  const put = (key: string, t: HostTensor): NativeDeviceBuffer => {
    const b = scratch.get(key, dtype, t.data.length) as NativeDeviceBuffer;
    b.upload(t.data);
    return b;
  };
  const out = scratch.get('stage.o', dtype, n) as NativeDeviceBuffer;
  const kind = dtype === 'float32' ? 'f32' : 'u16';
  if (outHost) {
    const fill = (data: Float32Array | Uint16Array): HostTensor => { native().copyHost(outHost.data, data); return outHost; };
    return {
      q: act(put('stage.q', hq), qs), k: act(put('stage.k', hk), ks), v: act(put('stage.v', hv), ks), o: act(out, qs),
      collect: () => fill(out.downloadSync(kind)),
      collectAsync: async () => fill(await out.download(kind)),
    };
  }
  return {
    q: act(put('stage.q', hq), qs), k: act(put('stage.k', hk), ks), v: act(put('stage.v', hv), ks), o: act(out, qs),
    collect: () => tensor(localArray(out.downloadSync(kind)), shape, dtype),
    collectAsync: async () => tensor(localArray(await out.download(kind)), shape, dtype),
  };
}

/** Validates `inputs` of time()/denseTime(): a non-empty array of [q, k, v] triples. */
export function checkInputSets(inputs: unknown): Array<[AnyTensor, AnyTensor, AnyTensor]> {
  if (!Array.isArray(inputs)) throw new TypeError(`inputs must be an array of [q, k, v] triples, received ${show(inputs)}`);
  if (inputs.length === 0) throw new RangeError('inputs must hold at least one [q, k, v] triple, received an empty array');
  inputs.forEach((s, i) => {
    if (!Array.isArray(s) || s.length !== 3) throw new TypeError(`inputs[${i}] must be a [q, k, v] triple, received ${show(s)}`);
  });
  return inputs as Array<[AnyTensor, AnyTensor, AnyTensor]>;
}

/**
 * Staging for timing loops: on CUDA, host inputs are uploaded into new DeviceTensors and the output is a
 * fixed device buffer, so only GPU work is timed; everything created is pushed to `owned` for disposal.
 */
export function stageForTiming(cuda: boolean, scratch: Scratch, layout: TensorLayout, c: CheckedQKV,
  q: AnyTensor, k: AnyTensor, v: AnyTensor, owned: Array<{ dispose(): void }>): Staged {
  if (!cuda) return stage(false, scratch, layout, c, q, k, v);
  if (!c.device) {
    [q, k, v] = [q, k, v].map((t) => { const d = DeviceTensor.fromHost(t as HostTensor); owned.push(d); return d; });
    c = { ...c, device: true };
  }
  const out = native().DeviceBuffer.alloc(numel(q.shape) * dtypeSize(q.dtype));
  owned.push(out);
  return stage(true, scratch, layout, c, q, k, v, out);
}

/**
 * The body every time() shares: `prepare` turns input set i into its op list (errors get the prefix
 * "inputs[i]: "; what it allocates, e.g. through stageForTiming, goes to `owned`), timeOps times the
 * lists, and everything in `owned` is freed afterwards.
 */
export function timeInputSets(plan: NativePlan, cuda: boolean, sets: ReadonlyArray<[AnyTensor, AnyTensor, AnyTensor]>,
  timing: { warmup: number; iters: number }, prepare: (set: [AnyTensor, AnyTensor, AnyTensor], owned: Array<{ dispose(): void }>) => Op[]): number[] {
  const owned: Array<{ dispose(): void }> = [];
  try {
    const prepared = sets.map((set, i) => inSet(i, () => prepare(set, owned)));
    return timeOps(plan, cuda, prepared, timing.warmup, timing.iters);
  } finally {
    for (const d of owned) d.dispose();
  }
}

/** Prefixes an error's message with the input set it came from. */
export function inSet<T>(i: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isErrorLike(e)) e.message = `inputs[${i}]: ${e.message}`;
    throw e;
  }
}
