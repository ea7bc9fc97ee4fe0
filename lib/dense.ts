// Exact softmax attention through a native Plan (our FlashAttention kernel on CUDA, the C++ reference on
// the CPU), with optional per-row LSE and entropy (docs/ALGORITHMS.md §C.3). Also the dense baseline timer.
import { native, type DenseArgs, type NativeCudaEvent, type NativeDeviceBuffer, type NativePlan } from './native';
import type { DenseOptions, DenseResult, HostTensor, TensorLayout } from './types';
import type { DeviceTensor } from './device';
import { checkDevice, checkTensorDevices, deviceCount } from './devices';
import { checkInputSets, checkQKV, freezeTensor, inSet, Scratch, stage, stageForTiming, timeInputSets, type AnyTensor, type Staged } from './inputs';
import { runAsync, runSync, type Op } from './ops';
import { StagingPool } from './host';
import { PlanCache } from './plancache';
import { checkSliceBytes } from './hoststage';
import { checkSignal, publishStart, throwIfAborted, traced } from './serving';
import { checkCallEvents, checkHandle, withEvents, type CallEvents } from './stream';
import { resolveBackend } from './options';
import { dtypeCode, localF32, tensor, type ActDims } from './tensor';
import { checkEnum, checkInt, checkMask, checkScale, optBool, snapshot, timeOptions, type TimeOptions } from './validate';

/** The keys of DenseOptions. */
export const DENSE_OPTION_KEYS = ['scale', 'returnLse', 'returnEntropy', 'keyMask', 'causalChunk', 'qOffset', 'tensorLayout', 'backend', 'signal',
  'stream', 'waitEvent', 'recordEvent', 'device', 'hostStagingSliceBytes'] as const;

interface DenseSetup {
  backend: 'cpu' | 'cuda';
  layout: TensorLayout;
  q: ActDims;
  k: ActDims;
  device: boolean;
  scale: number;
  returnLse: boolean;
  returnEntropy: boolean;
  keyMask?: Uint8Array;
  causalChunk: number;
  qOffset: number;
  signal?: AbortSignal;
  stream?: bigint;
  /** The GPU (options.device, else the inputs' device, else 0). */
  gpu: number;
  events: CallEvents;
  /** DenseOptions.hostStagingSliceBytes (Infinity: ordinary inputs copied at call time). */
  sliceBytes: number;
  c: ReturnType<typeof checkQKV>;
}

function setup(q: unknown, k: unknown, v: unknown, opts: unknown): DenseSetup {
  const o = snapshot('options', opts, DENSE_OPTION_KEYS, true);
  const layout = checkEnum('tensorLayout', o.tensorLayout, ['BSHD', 'BHSD'] as const, 'BSHD');
  const requested = checkEnum('backend', o.backend, ['auto', 'cpu', 'cuda'] as const, 'auto');
  const dtype = (q as { dtype?: unknown } | null)?.dtype;
  const c = checkQKV(q, k, v, layout, dtype as HostTensor['dtype'], 'q.dtype', {}, false);
  const backend = resolveBackend(c.device && requested === 'auto' ? 'cuda' : requested, (q as AnyTensor).dtype, c.q.D);
  if (c.device && backend !== 'cuda') {
    throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
  }
  // The GPU: options.device, else that of DeviceTensor inputs, else 0; DeviceTensors must all be on it.
  const gpu = o.device === undefined && c.device ? (q as DeviceTensor).device
    : checkDevice('device', o.device, backend, deviceCount());
  if (c.device) checkTensorDevices('denseAttention call', gpu, [['q', q as DeviceTensor], ['k', k as DeviceTensor], ['v', v as DeviceTensor]]);
  const scale = o.scale === undefined ? 1 / Math.sqrt(c.q.D) : checkScale('scale', o.scale);
  const keyMask = o.keyMask === undefined ? undefined : checkMask('keyMask', o.keyMask, c.q.B * c.k.S, 'B·Nk');
  const causalChunk = o.causalChunk === undefined ? 0 : checkInt('causalChunk', o.causalChunk, 1, c.k.S);
  const qOffset = o.qOffset === undefined ? c.k.S - c.q.S : checkInt('qOffset', o.qOffset, 0, 2 ** 31 - 1);
  if (causalChunk > 0 && qOffset < 0) {
    throw new RangeError(`causalChunk needs Nq ≤ Nk or an explicit qOffset, received Nq ${c.q.S} > Nk ${c.k.S}`);
  }
  return {
    backend, layout, q: c.q, k: c.k, device: c.device, scale,
    returnLse: optBool('returnLse', o.returnLse, false), returnEntropy: optBool('returnEntropy', o.returnEntropy, false),
    keyMask, causalChunk, qOffset: Math.max(qOffset, 0), signal: checkSignal(o.signal),
    stream: checkHandle('stream', o.stream, backend === 'cuda'), gpu, events: checkCallEvents(o, backend === 'cuda'),
    sliceBytes: checkSliceBytes('hostStagingSliceBytes', o.hostStagingSliceBytes), c,
  };
}

/** `stream`: enqueue on it (denseTime); the cached plans of calls always have a stream of their own. */
function densePlan(s: DenseSetup, dtype: HostTensor['dtype'], stream?: bigint): NativePlan {
  return new (native().Plan)({
    backend: s.backend, dtype: dtypeCode(dtype), B: s.q.B, H: s.q.H, D: s.q.D,
    b1: 1, b2: 1, maxAq: 1, maxFk: 1, iterative: false, threads: 0, ...(stream !== undefined && { stream }),
    ...(s.backend === 'cuda' && { device: s.gpu }),
  });
}

/** Idle dense plans kept per process (docs/API.md "Dense attention"). */
export const DENSE_PLAN_CACHE_SIZE = 4;

/**
 * What one dense call runs on: a plan (with, on CUDA, a stream of its own), the scratch it stages into
 * (uploaded inputs, the output and its pinned download target, lse / entropy; the pool of device outputs
 * without `out`), staging copies of ordinary host inputs and, for calls with a caller's `stream`, the two
 * events that order the plan's stream with it. Cached between calls of one shape (lib/plancache.ts).
 */
interface DenseEntry {
  plan: NativePlan;
  scratch: Scratch;
  staging: StagingPool;
  events?: [NativeCudaEvent, NativeCudaEvent];
  dispose(): void;
}

const plans = new PlanCache<DenseEntry>(DENSE_PLAN_CACHE_SIZE);

/** The keys of the idle cached plans, least recently used first (internal: tests). */
export function densePlanKeys(): string[] {
  return plans.keys();
}

/** Everything that decides the sizes of an entry's plan and buffers. */
function planKey(s: DenseSetup, dtype: HostTensor['dtype']): string {
  return [s.backend, s.gpu, dtype, s.q.B, s.q.H, s.q.S, s.k.S, s.q.D, s.layout, s.device ? 'device' : 'host',
    s.returnLse ? 'lse' : '', s.returnEntropy ? 'entropy' : ''].join('/');
}

function newEntry(s: DenseSetup, dtype: HostTensor['dtype']): DenseEntry {
  const scratch = new Scratch(s.backend === 'cuda', Infinity, s.gpu);
  const plan = densePlan(s, dtype);
  const staging = new StagingPool();
  const e: DenseEntry = {
    plan, scratch, staging,
    dispose: () => {
      plan.dispose();
      scratch.dispose();
      staging.clear();
      for (const ev of e.events ?? []) ev.dispose();
    },
  };
  return e;
}

/**
 * A call with a caller's `stream`: the plan's stream first waits for the work enqueued there before the
 * call (event 0), and, once the call's ops are enqueued (`enqueued`), work enqueued there later waits for
 * them (event 1). No handle of the caller's is kept after the call.
 */
function onCallerStream(e: DenseEntry, s: DenseSetup, ops: Op[]): { ops: Op[]; enqueued?: () => void } {
  const stream = s.stream;
  if (stream === undefined) return { ops };
  const [before, after] = e.events ??= [new (native().CudaEvent)(s.gpu), new (native().CudaEvent)(s.gpu)];
  before.record(stream);
  return {
    ops: [{ op: 'waitEvent', event: before.handle }, ...ops, { op: 'recordEvent', event: after.handle }],
    enqueued: () => after.wait(stream),
  };
}

type Side = Float32Array | NativeDeviceBuffer;

function denseOp(s: DenseSetup, st: Staged, dtype: HostTensor['dtype'], lse?: Side, entropy?: Side): Op {
  const args: DenseArgs & { dtype: ReturnType<typeof dtypeCode> } = {
    q: st.q, k: st.k, v: st.v, o: st.o, B: s.q.B, H: s.q.H, D: s.q.D, Nq: s.q.S, Nk: s.k.S,
    q0: s.causalChunk > 0 ? s.qOffset : 0, causalChunk: s.causalChunk, scale: s.scale, keyValid: s.keyMask,
    lse, entropy, dtype: dtypeCode(dtype),
  };
  return { op: 'dense', args };
}

/**
 * The lse / entropy outputs of one call: where the kernel writes them (CPU: addon arrays; CUDA: device
 * scratch), the ops that bring them to the host (CUDA: downloads on the plan's stream into pinned scratch,
 * run with the call's other ops before its one synchronisation) and how to hand them back (async: copied
 * into ordinary arrays off the event loop).
 */
interface SideOutputs {
  lse?: Side;
  entropy?: Side;
  post: Op[];
  collect(): { lse?: HostTensor; entropy?: HostTensor };
  collectAsync(): Promise<{ lse?: HostTensor; entropy?: HostTensor }>;
}

function sides(s: DenseSetup, scratch: Scratch): SideOutputs {
  const n = s.q.B * s.q.H * s.q.S, shape = [s.q.B, s.q.H, s.q.S];
  const cuda = s.backend === 'cuda';
  const post: Op[] = [];
  // host: the array the values are read from once the ops have run.
  const one = (want: boolean, key: string): { side?: Side; host?: Float32Array } => {
    if (!want) return {};
    if (!cuda) {
      const a = scratch.get(`dense.${key}`, 'float32', n) as Float32Array;
      return { side: a, host: a };
    }
    const dev = scratch.get(`dense.${key}`, 'float32', n) as NativeDeviceBuffer;
    const host = scratch.host(`host.${key}`, 'float32', n) as Float32Array;
    post.push({ op: 'download', dst: host, src: dev });
    return { side: dev, host };
  };
  const lse = one(s.returnLse, 'lse'), entropy = one(s.returnEntropy, 'entropy');
  const sync = (x: Float32Array | undefined): HostTensor | undefined => x && tensor(x.slice(), shape, 'float32');
  const async = async (x: Float32Array | undefined): Promise<HostTensor | undefined> =>
    x && tensor(localF32(await native().cloneHostAsync(x)), shape, 'float32');  // ordinary, transferable
  const pick = (l?: HostTensor, e?: HostTensor): { lse?: HostTensor; entropy?: HostTensor } => ({ ...(l && { lse: l }), ...(e && { entropy: e }) });
  return {
    lse: lse.side, entropy: entropy.side, post,
    collect: () => pick(sync(lse.host), sync(entropy.host)),
    collectAsync: async () => pick(await async(lse.host), await async(entropy.host)),
  };
}

/**
 * Exact softmax attention. q: [B][Nq][H][D], k, v: [B][Nk][H][D] (or BHSD); all host tensors (→ host
 * output) or all DeviceTensors (→ DeviceTensor output, CUDA). lse / entropy: float32 HostTensors [B][H][Nq].
 */
export function denseAttention(q: HostTensor, k: HostTensor, v: HostTensor, opts?: DenseOptions): Promise<DenseResult<HostTensor>>;
export function denseAttention(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: DenseOptions): Promise<DenseResult<DeviceTensor>>;
export function denseAttention<T extends AnyTensor>(q: T, k: T, v: T, opts?: DenseOptions): Promise<DenseResult<AnyTensor>>;
export async function denseAttention(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: DenseOptions): Promise<DenseResult<AnyTensor>> {
  [q, k, v] = [freezeTensor(q), freezeTensor(k), freezeTensor(v)];  // each read once
  const s = setup(q, k, v, opts);
  const signal = s.signal;
  throwIfAborted(signal);
  const cuda = s.backend === 'cuda';
  // A cached plan of this shape, or a new one; no other call uses it until it is given back.
  const key = planKey(s, q.dtype);
  const e = plans.take(key, () => newEntry(s, q.dtype));
  let held: ReturnType<StagingPool['secure']> | null = null;
  let ok = false;
  const settle = (): void => {
    held?.release();
    if (ok) plans.give(key, e);
    else e.dispose();  // after a failure, nothing of the call is reused
  };
  let end: (error?: unknown) => void;
  try {
    // Ordinary host inputs are copied now, before the first await, so the caller may reuse, transfer or
    // detach them as soon as this returns (lib/host.ts) — or, when they are larger than
    // hostStagingSliceBytes, in slices across event-loop turns, finished before anything is enqueued.
    held = !s.device ? e.staging.secure([q, k, v] as HostTensor[], cuda, { sliceBytes: s.sliceBytes, signal }) : null;
    end = publishStart('dense', s.backend, [q, k, v], held?.copiedBytes ?? 0);
  } catch (err) {
    settle();
    throw err;
  }
  if (held) [q, k, v] = held.tensors;
  return traced(end, async () => {
    try {
      // First: the staging is given back only after its last slice. Only a sliced job waits (an `await`
      // always yields; an idle call must enqueue before it returns).
      if (held?.sliced) await held.ready;
    } catch (err) {
      ok = true;  // nothing was enqueued: the plan and its buffers can serve the next call
      throw err;
    }
    const st = stage(cuda, e.scratch, s.layout, s.c, q, k, v);
    const side = sides(s, e.scratch);
    const run = onCallerStream(e, s, [...st.pre, denseOp(s, st, q.dtype, side.lse, side.entropy), ...st.post, ...side.post]);
    await runAsync(e.plan, withEvents(run.ops, s.events), cuda, signal, run.enqueued);
    const out = await st.collectAsync();
    const result = { out, ...(await side.collectAsync()) };
    ok = true;
    return result;
  }, settle);
}

/** Synchronous twin of denseAttention(). */
export function denseAttentionSync(q: HostTensor, k: HostTensor, v: HostTensor, opts?: DenseOptions): DenseResult<HostTensor>;
export function denseAttentionSync(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: DenseOptions): DenseResult<DeviceTensor>;
export function denseAttentionSync<T extends AnyTensor>(q: T, k: T, v: T, opts?: DenseOptions): DenseResult<AnyTensor>;
export function denseAttentionSync(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: DenseOptions): DenseResult<AnyTensor> {
  [q, k, v] = [freezeTensor(q), freezeTensor(k), freezeTensor(v)];  // each read once
  const s = setup(q, k, v, opts);
  throwIfAborted(s.signal);  // a sync call cannot be interrupted, but an already-aborted signal is honoured
  const cuda = s.backend === 'cuda';
  const key = planKey(s, q.dtype);
  const e = plans.take(key, () => newEntry(s, q.dtype));
  let held: ReturnType<StagingPool['secure']> | null = null;
  let ok = false;
  try {
    held = cuda && !s.device ? e.staging.secure([q, k, v] as HostTensor[], true) : null;  // pinned, for the uploads
    if (held) [q, k, v] = held.tensors;
    const st = stage(cuda, e.scratch, s.layout, s.c, q, k, v);
    const side = sides(s, e.scratch);
    const run = onCallerStream(e, s, [...st.pre, denseOp(s, st, q.dtype, side.lse, side.entropy), ...st.post, ...side.post]);
    runSync(e.plan, withEvents(run.ops, s.events), cuda, run.enqueued);
    const result = { out: st.collect(), ...side.collect() };
    ok = true;
    return result;
  } finally {
    held?.release();
    if (ok) plans.give(key, e);
    else e.dispose();
  }
}

/**
 * Times dense attention like MonarchAttention.time(): `iters` runs after `warmup`, rotating over the
 * input sets (all with the first set's shapes); ms per run (CUDA events / monotonic clock).
 * returnLse / returnEntropy are honoured (their cost is timed too).
 */
export function denseTime(inputs: Array<[AnyTensor, AnyTensor, AnyTensor]>, opts: DenseOptions & TimeOptions = {}): number[] {
  const all = snapshot('options', opts, [...DENSE_OPTION_KEYS, 'warmup', 'iters'], true);
  const { warmup, iters, ...dense } = all;
  const t = timeOptions({ warmup, iters });
  const sets = checkInputSets(inputs);
  const first = inSet(0, () => setup(sets[0][0], sets[0][1], sets[0][2], dense));
  const cuda = first.backend === 'cuda';
  const dtype = sets[0][0].dtype;
  const scratch = new Scratch(cuda, Infinity, first.gpu);
  const plan = densePlan(first, dtype, first.stream);
  try {
    const { lse, entropy } = sides(first, scratch);  // device scratch, freed with it
    return timeInputSets(plan, cuda, sets, t, ([q, k, v], owned) => {
      const s = setup(q, k, v, dense);
      const same = (['B', 'S', 'H', 'D'] as const).every((key) => s.q[key] === first.q[key]) && s.k.S === first.k.S;
      if (!same) {
        throw new RangeError(`shapes must equal those of inputs[0] (q [${sets[0][0].shape.join(', ')}], k [${sets[0][1].shape.join(', ')}])`);
      }
      if (q.dtype !== dtype) throw new TypeError(`q.dtype '${q.dtype}' must equal inputs[0]'s '${dtype}'`);
      return [denseOp(s, stageForTiming(cuda, scratch, s.layout, s.c, q, k, v, owned), dtype, lse, entropy)];
    });
  } finally {
    plan.dispose();
    scratch.dispose();
  }
}
