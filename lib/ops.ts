// Native stage calls as data, and their executors. A forward is built as a list of ops (gathers, the
// R/L steps of the T loop, dense recomputation, scatters) and then run:
//   - sync: each op on the calling thread (CPU) or enqueued (CUDA), then one synchronize;
//   - async: CPU ops awaited one by one on libuv workers; CUDA ops enqueued, then one awaited
//     synchronizeAsync (no host sync inside the T loop, STYLE.md §6);
//   - enqueue only (CUDA timing between events).
// CUDA host tensors travel as 'upload' / 'download' ops: copies on the plan's stream between pinned
// addon memory and device buffers, so they run in order with the kernels and nothing waits for the
// whole device. 'waitEvent' / 'recordEvent' order a call with a caller's CUDA events (lib/stream.ts).
import type { DenseArgs, DTypeCode, GatherArgs, NativeDeviceBuffer, NativePlan, StageArgs } from './native';
import { throwIfAborted } from './serving';

export type Op =
  | { op: 'r'; args: StageArgs; first: boolean; last: boolean }
  | { op: 'l'; args: StageArgs; final: boolean }
  | { op: 'rl'; args: StageArgs; first: boolean }
  | { op: 'gather'; args: GatherArgs & { dtype: DTypeCode } }
  | { op: 'dense'; args: DenseArgs & { dtype: DTypeCode } }
  | { op: 'upload'; dst: NativeDeviceBuffer; src: ArrayBufferView }
  | { op: 'download'; dst: ArrayBufferView; src: NativeDeviceBuffer }
  | { op: 'waitEvent'; event: bigint }
  | { op: 'recordEvent'; event: bigint };

/**
 * THE T LOOP (docs/ALGORITHMS.md §A.3, §B.3): T alternating (R-step, L-step) pairs from L = I.
 *   for t in 0..T−2: rStep(first = t == 0, last = false), lStep(final = false);
 *   then the last pair as one stage, finalStep(first = T == 1) = rStep(last = true) + lStep(final = true),
 *   which writes the output `o` (one fused kernel on CUDA where it applies).
 */
export function tLoop(args: StageArgs, T: number): Op[] {
  const { o, ...noOut } = args;
  const ops: Op[] = [];
  for (let t = 0; t < T - 1; t++) {
    ops.push({ op: 'r', args: noOut, first: t === 0, last: false });
    ops.push({ op: 'l', args: noOut, final: false });
  }
  if (!o) throw new Error('internal: the final L-step needs an output');
  ops.push({ op: 'rl', args: { ...noOut, o }, first: T === 1 });
  return ops;
}

function callSync(plan: NativePlan, o: Op): void {
  switch (o.op) {
    case 'r': plan.rStep(o.args, o.first, o.last); break;
    case 'l': plan.lStep(o.args, o.final); break;
    case 'rl': plan.finalStep(o.args, o.first); break;
    case 'gather': plan.gather(o.args); break;
    case 'dense': plan.dense(o.args); break;
    case 'upload': plan.upload(o.dst, o.src); break;
    case 'download': plan.download(o.dst, o.src); break;
    case 'waitEvent': plan.waitEvent(o.event); break;
    case 'recordEvent': plan.recordEventHandle(o.event); break;
  }
}

function callAsync(plan: NativePlan, o: Op): Promise<void> {
  switch (o.op) {
    case 'r': return plan.rStepAsync(o.args, o.first, o.last);
    case 'l': return plan.lStepAsync(o.args, o.final);
    case 'rl': return plan.finalStepAsync(o.args, o.first);
    case 'dense': return plan.denseAsync(o.args);
    case 'gather': return plan.gatherAsync(o.args);
    case 'upload': case 'download': case 'waitEvent': case 'recordEvent':
      throw new Error(`internal: '${o.op}' is a CUDA op`);
  }
}

/** Enqueues (CUDA) or runs (CPU) every op; no synchronisation. */
export function enqueue(plan: NativePlan, ops: readonly Op[]): void {
  for (const o of ops) callSync(plan, o);
}

/** Runs the ops to completion on the calling thread (`enqueued`: called once every op is enqueued). */
export function runSync(plan: NativePlan, ops: readonly Op[], cuda: boolean, enqueued?: () => void): void {
  enqueue(plan, ops);
  enqueued?.();
  if (cuda) plan.synchronize();
}

/**
 * Runs the ops off the event loop; resolves when they have finished. `enqueued` (CUDA): called once
 * every op is enqueued, before the wait.
 */
export async function runAsync(plan: NativePlan, ops: readonly Op[], cuda: boolean, signal?: AbortSignal, enqueued?: () => void): Promise<void> {
  throwIfAborted(signal);
  if (cuda) {
    // Enqueued GPU work cannot be recalled: an abort while it runs rejects once it has completed.
    enqueue(plan, ops);
    enqueued?.();
    await plan.synchronizeAsync();
    throwIfAborted(signal);
    return;
  }
  for (const o of ops) {
    throwIfAborted(signal);  // CPU: stop between stages; the running stage completes
    await callAsync(plan, o);
  }
  throwIfAborted(signal);
}

/**
 * Serialises async work on one object (one plan workspace, one set of scratch buffers). An idle queue
 * starts `fn` at once, inside run(): a CUDA call then enqueues its work on the stream before the API call
 * returns (what stream interop relies on: docs/API.md "Stream interop"); a busy one starts it after
 * every earlier fn has settled.
 */
export class WorkQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  get busy(): boolean { return this.pending > 0; }
  run<T>(fn: () => Promise<T>): Promise<T> {
    const idle = this.pending === 0;
    this.pending++;
    const p = idle ? fn() : this.tail.then(fn, fn);
    this.tail = p.then(() => { this.pending--; }, () => { this.pending--; });
    return p;
  }
}

/**
 * Times `iters` runs of op lists after `warmup`, rotating over `sets`; ms per timed run. CUDA: events
 * recorded on the plan's stream around each enqueued run, one synchronize at the end. CPU: the
 * monotonic clock around each synchronous run.
 */
export function timeOps(plan: NativePlan, cuda: boolean, sets: readonly Op[][], warmup: number, iters: number): number[] {
  const times: number[] = [];
  if (!cuda) {
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = process.hrtime.bigint();
      enqueue(plan, sets[i % sets.length]);
      if (i >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return times;
  }
  const events: Array<[number, number]> = [];
  try {
    for (let i = 0; i < warmup + iters; i++) {
      const ops = sets[i % sets.length];
      if (i < warmup) { enqueue(plan, ops); continue; }
      const e0 = plan.recordEvent();
      enqueue(plan, ops);
      events.push([e0, plan.recordEvent()]);
    }
    plan.synchronize();
    for (const [a, b] of events) times.push(plan.eventElapsedMs(a, b));
  } finally {
    plan.releaseEvents();
  }
  return times;
}
