// A fair gate in front of the GPU: at most `limit` cache calls of all sessions in flight at once; calls
// beyond it wait in one FIFO. A session issues its calls one after the other (layer by layer, pass by
// pass), so it has at most one call waiting: the FIFO serves the waiting sessions in strict rotation
// (round-robin at the granularity of one layer-pass), and no session can run ahead of the others by more
// than one call per turn. (With enqueued calls a turn is one group, held from its enqueue to its flush; a
// session pipelining at depth d holds up to d turns but still waits in the FIFO for each new one, so it
// too has at most one turn waiting and the rotation holds.) limit 0 = no gate (every call is issued at
// once; the GPU's own scheduling of the sessions' streams decides the interleaving).

export interface GateStats {
  limit: number;
  inFlight: number;
  waiting: number;
  /** Most calls waiting at once since the last reset. */
  maxWaiting: number;
  /** Calls admitted since the last reset, and how many of them had to wait. */
  calls: number;
  waited: number;
  /** Total time calls spent waiting, ms. */
  waitMs: number;
}

export class FairGate {
  private inFlight = 0;
  private readonly queue: Array<() => void> = [];
  private counters = { maxWaiting: 0, calls: 0, waited: 0, waitMs: 0 };

  constructor(private limit: number) {
    FairGate.check(limit);
  }

  static check(limit: unknown): number {
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0 || limit > 1024) {
      throw new RangeError(`inflight must be an integer in 0..1024 (0 = no limit), received ${JSON.stringify(limit)}`);
    }
    return limit;
  }

  /** Changes the limit; waiting calls are admitted at once if the new limit allows. */
  setLimit(limit: number): void {
    this.limit = FairGate.check(limit);
    this.drain();
  }

  /** Runs fn once a slot is free (in arrival order); the slot is released when its Promise settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.counters.calls++;
    if (this.limit > 0 && (this.inFlight >= this.limit || this.queue.length > 0)) {
      const t0 = process.hrtime.bigint();
      await new Promise<void>((resolve) => {
        this.queue.push(resolve);
        this.counters.maxWaiting = Math.max(this.counters.maxWaiting, this.queue.length);
      });
      this.counters.waited++;
      this.counters.waitMs += Number(process.hrtime.bigint() - t0) / 1e6;
    } else {
      this.inFlight++;
    }
    try {
      return await fn();
    } finally {
      this.inFlight--;
      this.drain();
    }
  }

  private drain(): void {
    while (this.queue.length > 0 && (this.limit === 0 || this.inFlight < this.limit)) {
      this.inFlight++;  // the slot is taken for the waiter before it resumes
      this.queue.shift()!();
    }
  }

  stats(reset = false): GateStats {
    const s = { limit: this.limit, inFlight: this.inFlight, waiting: this.queue.length, ...this.counters, waitMs: Math.round(this.counters.waitMs * 1e3) / 1e3 };
    if (reset) this.counters = { maxWaiting: 0, calls: 0, waited: 0, waitMs: 0 };
    return s;
  }
}
