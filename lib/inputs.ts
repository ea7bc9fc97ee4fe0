// q/k/v checks (names the tensor and the dimension) and host/device staging shared by MonarchAttention,
// KVCache and dense attention.
import { native, type NativeAct, type NativeData, type NativeDeviceBuffer, type NativePlan, type Strides } from './native';
import { timeOps, type Op } from './ops';
import type { DType, HostTensor, TensorLayout } from './types';
import { DeviceTensor, bufferView, deviceBuffer, wrapBuffer } from './device';
import { addonArray, type HostArray } from './host';
import { DeviceOutputPool, HostOutputPool, type HostOutputArray } from './outputs';
import { localArray, actDims, actStrides, checkHostTensor, dimIndex, dtypeSize, numel, readOnce, tensor, type ActDims } from './tensor';
import { show, isTyped, isErrorLike } from './validate';

export type AnyTensor = HostTensor | DeviceTensor;

/** Expected value of a dim and how to name it in a message (e.g. "heads 12" or "q.shape[2]=12"). */
type Want = { value: number; label: string } | undefined;

/**
 * A caller's tensor argument read once: a DeviceTensor (or a non-object: the checks refuse it later, in
 * their usual order) as it is; any other object as a new plain object { data, shape (an array is
 * copied), dtype } whose fields were each read exactly once, so getters that return something else on
 * a later read cannot make the checked tensor differ from the one that is staged and computed on.
 */
export function freezeTensor<T>(t: T): T {
  return t instanceof DeviceTensor ? t : readOnce(t);
}

export function checkOne(name: string, t: unknown, layout: TensorLayout, dtype: DType, dtypeLabel: string,
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
  private readonly hostBufs = new Map<string, HostArray>();
  /** Memory of device outputs returned without `out` (lib/outputs.ts), reused once the caller disposes them. */
  readonly outputs: DeviceOutputPool;
  /** Host outputs returned without `out` (MonarchOptions.hostOutputs 'pooled'; null: a fresh array per call). */
  readonly hostOutputs: HostOutputPool | null;
  /**
   * `idleOutputBytes`: idle output memory kept for reuse at most (the rest of maxWorkspaceBytes);
   * `device`: the GPU of every device buffer (CUDA); `pooledHost`: host outputs come from hostOutputs.
   */
  constructor(private readonly cuda: boolean, idleOutputBytes = Infinity, readonly device = 0, pooledHost = false) {
    this.outputs = new DeviceOutputPool(4, (bytes) => native().DeviceBuffer.alloc(bytes, device), idleOutputBytes);
    // Page-locked where a GPU is usable (the download lands in it), never zeroed (fully written first).
    this.hostOutputs = pooledHost
      ? new HostOutputPool((f32, n) => localArray(addonArray(f32 ? 'float32' : 'bfloat16', n, cuda, false)), 2, idleOutputBytes)
      : null;
  }

  /** Bytes held by get()'s buffers and idle output buffers (device memory on CUDA). */
  get bytes(): number {
    let b = this.outputs.bytes;
    for (const x of this.bufs.values()) b += x.byteLength;
    return b;
  }

  /** Bytes held by host()'s pinned buffers and idle pooled host outputs. */
  get hostBytes(): number {
    let b = this.hostOutputs?.bytes ?? 0;
    for (const x of this.hostBufs.values()) b += x.byteLength;
    return b;
  }

  /** A page-locked host buffer (addon memory) of `elems` elements of `dtype`: CUDA download targets. */
  host(key: string, dtype: DType, elems: number): HostArray {
    const have = this.hostBufs.get(key);
    if (have && have.length === elems && isTyped(have, 'Float32Array') === (dtype === 'float32')) return have;
    const b = addonArray(dtype, elems, true, false);  // download targets: every byte is written first
    this.hostBufs.set(key, b);
    return b;
  }

  /** A buffer of `elems` elements of `dtype` ('float32' also for f32 side outputs). */
  get(key: string, dtype: DType, elems: number): NativeData {
    const bytes = elems * dtypeSize(dtype);
    const have = this.bufs.get(key);
    if (have && have.byteLength === bytes) return have;
    if (have && !(isTyped(have, 'Float32Array') || isTyped(have, 'Uint16Array'))) have.dispose();
    const b: NativeData = this.cuda ? native().DeviceBuffer.alloc(bytes, this.device) : addonArray(dtype, elems);
    this.bufs.set(key, b);
    return b;
  }

  dispose(): void {
    for (const b of this.bufs.values()) {
      if (!(isTyped(b, 'Float32Array') || isTyped(b, 'Uint16Array')) && !b.disposed) b.dispose();
    }
    this.bufs.clear();
    this.hostBufs.clear();
    this.outputs.close();
    this.hostOutputs?.close();
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

/**
 * An output buffer on the backend's side, the ops that bring it to the host (CUDA, host q: a download
 * on the plan's stream, run after the call's ops) and how to hand the output back once they have run.
 */
export interface StagedOutput {
  o: NativeAct;
  post: Op[];
  collect(): AnyTensor;
  collectAsync(): Promise<AnyTensor>;
}

/** Inputs on the backend's side (`pre`: CUDA uploads to run first) plus the output. */
export interface Staged extends StagedOutput {
  q: NativeAct; k: NativeAct; v: NativeAct;
  pre: Op[];
}

/**
 * A host input on the CUDA backend: the scratch device buffer `key`, filled by an upload op pushed to
 * `pre` (the tensor must be secured for CUDA, i.e. pinned addon memory: lib/host.ts StagingPool).
 */
export function uploadInput(scratch: Scratch, key: string, t: HostTensor, pre: Op[]): NativeDeviceBuffer {
  const b = scratch.get(key, t.dtype, t.data.length) as NativeDeviceBuffer;
  pre.push({ op: 'upload', dst: b, src: t.data });
  return b;
}

/**
 * The output of a call with q's shape and dtype (strides `st`), and how the caller gets it:
 *   device q: `out` (a checked DeviceTensor) or a new DeviceTensor, written in place;
 *   CPU, host q: a caller's addon / shared `out` is written in place; otherwise the workers write the
 *     scratch 'stage.o' (addon memory) and the caller gets it copied into an ordinary `out`, or a new
 *     ordinary (transferable) array, copied off the event loop for async calls;
 *   CUDA, host q: the scratch device buffer 'stage.o', downloaded into a new array or `out`.
 */
export function stageOutput(cuda: boolean, scratch: Scratch, q: AnyTensor, st: Strides, out: AnyTensor | undefined,
  d: ActDims, layout: TensorLayout): StagedOutput {
  // The shape comes from the validated dims, never from q.shape again (a getter or Proxy could answer
  // differently on a second read).
  const shape = layout === 'BSHD' ? [d.B, d.S, d.H, d.D] : [d.B, d.H, d.S, d.D];
  const dtype = q.dtype, n = numel(shape);
  if (q instanceof DeviceTensor) {
    if (!cuda) throw new TypeError("q is a DeviceTensor but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
    const dev = out as DeviceTensor | undefined;
    const buf = dev ? deviceBuffer(dev) : scratch.outputs.take(n * dtypeSize(dtype));
    const give = (b: NativeDeviceBuffer): void => scratch.outputs.give(b);
    const result = (): AnyTensor => dev ?? wrapBuffer(buf, shape, dtype, give);
    return { o: act(buf, st), post: [], collect: result, collectAsync: async () => result() };
  }
  const host = out as HostTensor | undefined;
  if (!host && scratch.hostOutputs) {
    // A pooled output (MonarchOptions.hostOutputs 'pooled'): written in place like an addon `out` (CPU
    // workers write it; CUDA downloads into it), handed back with a dispose() that returns it.
    const pool = scratch.hostOutputs, buf = pool.take(dtype === 'float32', n);
    const result = (): HostTensor => pooledTensor(buf, shape, dtype, pool);
    if (!cuda) return { o: act(buf, st), post: [], collect: result, collectAsync: async () => result() };
    const dev = scratch.get('stage.o', dtype, n) as NativeDeviceBuffer;
    return { o: act(dev, st), post: [{ op: 'download', dst: buf, src: dev }], collect: result, collectAsync: async () => result() };
  }
  if (!cuda) {
    if (host && native().hostMemoryKind(host.data) !== 0) {
      return { o: act(host.data, st), post: [], collect: () => host, collectAsync: async () => host };
    }
    const buf = scratch.get('stage.o', dtype, n) as Float32Array | Uint16Array;
    if (host) {
      // An ordinary array: copied into after the work (an Error if the caller detached it meanwhile).
      const fill = (): HostTensor => fillOut(host, buf);
      return { o: act(buf, st), post: [], collect: fill, collectAsync: async () => fill() };
    }
    return {
      o: act(buf, st), post: [],
      collect: () => tensor(buf.slice(), shape, dtype),
      collectAsync: async () => tensor(localArray(await native().cloneHostAsync(buf)), shape, dtype),
    };
  }
  // CUDA, host q: computed into device scratch, downloaded on the stream into pinned memory (a caller's
  // pinned `out`, else the pinned scratch 'host.o'), handed back like the CPU's scratch output.
  const dev = scratch.get('stage.o', dtype, n) as NativeDeviceBuffer;
  const direct = host !== undefined && native().isPinnedHost(host.data);
  const pinned = direct ? host.data : scratch.host('host.o', dtype, n);
  const post: Op[] = [{ op: 'download', dst: pinned, src: dev }];
  if (direct) return { o: act(dev, st), post, collect: () => host, collectAsync: async () => host };
  if (host) {
    const fill = (): HostTensor => fillOut(host, pinned);
    return { o: act(dev, st), post, collect: fill, collectAsync: async () => fill() };
  }
  return {
    o: act(dev, st), post,
    collect: () => tensor(pinned.slice(), shape, dtype),
    collectAsync: async () => tensor(localArray(await native().cloneHostAsync(pinned)), shape, dtype),
  };
}

/**
 * Copies a finished output into an ordinary `out` (on the main thread, after the work): an Error naming
 * `out` when the caller detached or shrank its buffer while the call ran.
 */
function fillOut(host: HostTensor, from: HostArray): HostTensor {
  const d = host.data;
  if (d.byteLength !== from.byteLength) {
    throw new Error(`out was detached or resized while the call ran: out.data has ${d.byteLength} bytes, the output ${from.byteLength}; keep out's buffer until the call settles`);
  }
  native().copyHost(d, from);
  return host;
}

/** A frozen host tensor over a pooled buffer whose (non-enumerable) dispose() gives the buffer back. */
function pooledTensor(buf: HostOutputArray, shape: number[], dtype: DType, pool: HostOutputPool): HostTensor {
  // Once per tensor: the buffer is lent again after it comes back, and a second dispose() of this
  // tensor must not give back the later call's output that now uses it.
  let given = false;
  const dispose = (): void => {
    if (given) return;
    given = true;
    pool.give(buf);
  };
  const t = { data: buf, shape: Object.freeze(shape), dtype };
  Object.defineProperty(t, 'dispose', { value: dispose });
  Object.defineProperty(t, Symbol.dispose, { value: dispose });
  return Object.freeze(t) as HostTensor;
}

/**
 * Stages checked q/k/v for a backend: CPU host tensors are used in place (callers of async work pass
 * secured ones, lib/host.ts); CUDA host tensors (secured for CUDA: pinned) are uploaded into scratch by
 * the `pre` ops; CUDA DeviceTensors are used in place. The output (stageOutput) has q's shape, dtype and
 * layout; `out` is a checked `out` option. Run `[...pre, ...ops, ...post]`.
 */
export function stage(cuda: boolean, scratch: Scratch, layout: TensorLayout, c: CheckedQKV,
  q: AnyTensor, k: AnyTensor, v: AnyTensor, out?: AnyTensor): Staged {
  const qs = actStrides(c.q, layout), ks = actStrides(c.k, layout);
  if (c.device && !cuda) throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
  const o = stageOutput(cuda, scratch, q, qs, out, c.q, layout);
  if (c.device) {
    return { ...o, pre: [], q: act(deviceBuffer(q as DeviceTensor), qs), k: act(deviceBuffer(k as DeviceTensor), ks), v: act(deviceBuffer(v as DeviceTensor), ks) };
  }
  const hq = q as HostTensor, hk = k as HostTensor, hv = v as HostTensor;
  if (!cuda) return { ...o, pre: [], q: act(hq.data, qs), k: act(hk.data, ks), v: act(hv.data, ks) };
  const pre: Op[] = [];
  const [bq, bk, bv] = uploadQKV(scratch, hq, hk, hv, pre);
  return { ...o, pre, q: act(bq, qs), k: act(bk, ks), v: act(bv, ks) };
}

/**
 * CUDA host q, k, v (secured: pinned): their scratch device buffers 'stage.q', 'stage.k', 'stage.v' and
 * the three upload ops, pushed to `pre` in that order (stage(); forward()'s early uploads enqueue them
 * one by one).
 */
export function uploadQKV(scratch: Scratch, q: HostTensor, k: HostTensor, v: HostTensor, pre: Op[]): NativeDeviceBuffer[] {
  return [uploadInput(scratch, 'stage.q', q, pre), uploadInput(scratch, 'stage.k', k, pre), uploadInput(scratch, 'stage.v', v, pre)];
}

/** Validates `inputs` of time()/denseTime(): a non-empty array of [q, k, v] triples. */
export function checkInputSets(inputs: unknown): Array<[AnyTensor, AnyTensor, AnyTensor]> {
  if (!Array.isArray(inputs)) throw new TypeError(`inputs must be an array of [q, k, v] triples, received ${show(inputs)}`);
  if (inputs.length === 0) throw new RangeError('inputs must hold at least one [q, k, v] triple, received an empty array');
  return inputs.map((s, i) => {
    if (!Array.isArray(s) || s.length !== 3) throw new TypeError(`inputs[${i}] must be a [q, k, v] triple, received ${show(s)}`);
    return [freezeTensor(s[0]), freezeTensor(s[1]), freezeTensor(s[2])] as [AnyTensor, AnyTensor, AnyTensor];
  });
}

/**
 * Staging for timing loops: on CUDA, host inputs are uploaded into new DeviceTensors and the output is a
 * fixed device buffer, so only GPU work is timed; everything created is pushed to `owned` for disposal.
 */
export function stageForTiming(cuda: boolean, scratch: Scratch, layout: TensorLayout, c: CheckedQKV,
  q: AnyTensor, k: AnyTensor, v: AnyTensor, owned: Array<{ dispose(): void }>): Staged {
  if (!cuda) return stage(false, scratch, layout, c, q, k, v);
  if (!c.device) {
    [q, k, v] = [q, k, v].map((t) => { const d = DeviceTensor.fromHost(t as HostTensor, { device: scratch.device }); owned.push(d); return d; });
    c = { ...c, device: true };
  }
  const out = wrapBuffer(native().DeviceBuffer.alloc(numel(q.shape) * dtypeSize(q.dtype), scratch.device), q.shape.slice(), q.dtype);
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
