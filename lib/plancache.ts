// A small LRU of idle native objects keyed by what decides their sizes. lib/dense.ts keeps its plans here
// (one per process and realm, lib/denseplans.ts), so that repeated dense calls of one shape reuse a
// plan, its scratch and its staging instead of allocating (cudaMalloc, and the implicit device
// synchronisation of cudaFree) on every call.
//
// An entry in use is not in the cache: take() removes it, and a second concurrent caller with the same
// key gets a new entry, so no two calls ever share one. give() puts an entry back as the most recently
// used; past `max` idle entries the least recently used ones are disposed. Several idle entries may share
// a key (N concurrent calls of one shape keep N entries, up to `max`).

/** What the cache needs of an entry. */
export interface CacheEntry { dispose(): void }

export class PlanCache<E extends CacheEntry> {
  /** Idle entries, least recently used first. */
  private idle: Array<{ key: string; entry: E }> = [];

  /** `max`: idle entries kept at most (≥ 0; 0 disposes every entry given back). */
  constructor(readonly max: number) {}

  /** Idle entries held now. */
  get size(): number { return this.idle.length; }

  /** The keys of the idle entries, least recently used first (tests and diagnostics). */
  keys(): string[] { return this.idle.map((x) => x.key); }

  /** Every idle entry (for memory figures). */
  entries(): E[] { return this.idle.map((x) => x.entry); }

  /**
   * The most recently used idle entry of `key`, taken out of the cache (the caller owns it until give()
   * or dispose()), or a new one from `make` (which may throw: nothing is cached then).
   */
  take(key: string, make: () => E): E {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      if (this.idle[i].key === key) return this.idle.splice(i, 1)[0].entry;
    }
    return make();
  }

  /** Returns an idle entry as the most recently used; disposes the least recently used past `max`. */
  give(key: string, entry: E): void {
    this.idle.push({ key, entry });
    while (this.idle.length > this.max) this.idle.shift()!.entry.dispose();
  }

  /** Disposes every idle entry (entries in use are disposed when given back past `max`, or by their owner). */
  clear(): void {
    const all = this.idle;
    this.idle = [];
    for (const x of all) x.entry.dispose();
  }
}
