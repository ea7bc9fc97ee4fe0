// The bookkeeping of a pool's enqueued cache calls (KVCache.enqueueAttend / enqueueWrite): which calls
// were enqueued since the last flush() (so that a failure found by the flush's wait names them and marks
// their layers unusable), and the flushes in flight (so that awaited / sync calls, reset() and close()
// wait for them). An enqueued call has done everything a host can check when it returns (validation,
// positions, the launch of each op); what only the GPU can report (a kernel fault, a sticky CUDA error)
// surfaces at the next wait, which CUDA cannot attribute to one kernel: the flush names the calls it
// covered.

/** One enqueued call, for error messages: its layer, operation and the chunk's first frame. */
interface CallTag { layer: number; op: 'attend' | 'write'; frame: number }

/** The calls one flush covers. */
export interface Batch {
  count: number;
  first: CallTag | null;
  last: CallTag | null;
  /** Marks every layer with a call in the batch unusable (KVCache.failure). */
  fails: Set<(message: string) => void>;
}

const tag = (t: CallTag): string => `layer ${t.layer} ${t.op} at frame ${t.frame}`;

/** Describes a batch for a failed flush's message. */
export function describeBatch(b: Batch): string {
  if (b.count === 0) return 'no calls enqueued since the previous flush';
  if (b.count === 1) return `1 enqueued call: ${tag(b.first!)}`;
  return `${b.count} enqueued calls, ${tag(b.first!)} … ${tag(b.last!)}`;
}

export class EnqueueLedger {
  private batch: Batch = EnqueueLedger.empty();
  private inFlight = 0;
  private waiters: Array<() => void> = [];

  private static empty(): Batch {
    return { count: 0, first: null, last: null, fails: new Set() };
  }

  /** True while calls are enqueued but not flushed, or a flush has not settled. */
  get pending(): boolean {
    return this.batch.count > 0 || this.inFlight > 0;
  }

  /** Calls enqueued since the last flush() call. */
  get unflushed(): number {
    return this.batch.count;
  }

  /** Flushes not yet settled. */
  get flushing(): number {
    return this.inFlight;
  }

  record(fail: (message: string) => void, layer: number, op: CallTag['op'], frame: number): void {
    const b = this.batch, t = { layer, op, frame };
    if (b.count === 0) b.first = t;
    b.last = t;
    b.count++;
    b.fails.add(fail);
  }

  /** Starts a flush: hands over the unflushed calls; end() must follow once it has settled. */
  begin(): Batch {
    const b = this.batch;
    this.batch = EnqueueLedger.empty();
    this.inFlight++;
    return b;
  }

  end(): void {
    this.inFlight--;
    if (this.inFlight === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const resolve of w) resolve();
    }
  }

  /** Resolves once no flush is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
