// The collective a sequence-parallel forward needs (an all-to-all of strided byte regions, a barrier,
// abort, timeouts) as an interface, and its in-process simulated implementation for tests: P ranks in one
// process exchanging host memory, deterministically. The NCCL implementation is lib/nccl.ts.
import { DeviceTensor } from './device';
import { checkInt, checkObject, show } from './validate';

/**
 * A 2-D byte region of a buffer: `rows` rows of `rowBytes` bytes, row i starting at offset + i·pitch.
 * Its bytes, row after row, are what travels (the linear order of a send matches that of the receive).
 */
export interface Region {
  offset: number;
  rows: number;
  rowBytes: number;
  pitch: number;
}

/** Host memory (simulated communicator) or a DeviceTensor (NCCL). */
export type CommBuffer = Float32Array | Uint16Array | Uint8Array | DeviceTensor;

/**
 * One buffer pair of an all-to-all: `send[p]` is the region of `src` this rank sends to rank p,
 * `recv[p]` the region of `dst` it receives from rank p (p = this rank included: a local copy). The
 * bytes of send[p] on rank r must be as many as those of recv[r] on rank p.
 */
export interface AllToAllPart {
  src: CommBuffer;
  dst: CommBuffer;
  send: readonly Region[];
  recv: readonly Region[];
}

/**
 * What SequenceParallelAttention needs from a collective engine. One operation at a time per
 * communicator (callers await each); every operation either completes on every rank or fails within
 * `timeoutMs` (a rank that died or hangs makes the others reject with a timeout Error), after which the
 * communicator is aborted and every later call rejects.
 */
export interface Communicator {
  /** This process's rank, 0..size−1. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /** 'host': buffers are typed arrays (host tensors); 'device': DeviceTensors on this process's GPU. */
  readonly memory: 'host' | 'device';
  /** Per-operation deadline in ms. */
  readonly timeoutMs: number;
  /** True once aborted (by abort(), a timeout or a remote error); every later call rejects. */
  readonly aborted: boolean;
  /** Exchanges the parts' regions with every rank (one group: all parts, all peers). */
  allToAll(parts: readonly AllToAllPart[]): Promise<void>;
  /** Resolves once every rank has called barrier(). */
  barrier(): Promise<void>;
  /** Fails the operation in flight and every later one with `reason`; frees nothing. Idempotent. */
  abort(reason?: string): void;
  /** Frees the communicator (aborting an operation in flight). Idempotent. */
  dispose(): void;
}

/** Bytes a region covers. */
export function regionBytes(r: Region): number {
  return r.rows * r.rowBytes;
}

/** A region is one contiguous span (sent or received in place, without staging). */
export function isContiguous(r: Region): boolean {
  return r.rows <= 1 || r.pitch === r.rowBytes;
}

function byteLength(b: CommBuffer): number {
  return b.byteLength;
}

/** Validates the parts of an allToAll call against the communicator's size and the buffers' lengths. */
export function checkParts(parts: unknown, size: number, memory: 'host' | 'device'): AllToAllPart[] {
  if (!Array.isArray(parts)) throw new TypeError(`allToAll: parts must be an array, received ${show(parts)}`);
  parts.forEach((raw, i) => {
    const p = checkObject(`allToAll: parts[${i}]`, raw);
    for (const key of ['src', 'dst'] as const) {
      const b = p[key];
      const device = b instanceof DeviceTensor;
      if (memory === 'device' ? !device : !ArrayBuffer.isView(b)) {
        throw new TypeError(`allToAll: parts[${i}].${key} must be ${memory === 'device' ? 'a DeviceTensor' : 'a typed array'} for a ${memory}-memory communicator, received ${show(b)}`);
      }
    }
    for (const key of ['send', 'recv'] as const) {
      const list = p[key];
      if (!Array.isArray(list) || list.length !== size) {
        throw new RangeError(`allToAll: parts[${i}].${key} must be an array of ${size} regions (one per rank), received ${show(list)}`);
      }
      const buf = (key === 'send' ? p.src : p.dst) as CommBuffer;
      list.forEach((rr, peer) => {
        const where = `allToAll: parts[${i}].${key}[${peer}]`;
        const r = checkObject(where, rr);
        const offset = checkInt(`${where}.offset`, r.offset, 0);
        const rows = checkInt(`${where}.rows`, r.rows, 0);
        const rowBytes = checkInt(`${where}.rowBytes`, r.rowBytes, 0);
        const pitch = checkInt(`${where}.pitch`, r.pitch, 0);
        if (rows > 1 && pitch < rowBytes) throw new RangeError(`${where}.pitch ${pitch} must be >= rowBytes ${rowBytes}`);
        const end = rows === 0 || rowBytes === 0 ? offset : offset + (rows - 1) * pitch + rowBytes;
        if (end > byteLength(buf)) {
          throw new RangeError(`${where} ends at byte ${end}, past the ${byteLength(buf)} bytes of parts[${i}].${key === 'send' ? 'src' : 'dst'}`);
        }
      });
    }
  });
  return parts as AllToAllPart[];
}

function bytesOf(b: CommBuffer): Uint8Array {
  const v = b as ArrayBufferView;
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The region's bytes, row after row (a new array). */
function readRegion(b: Uint8Array, r: Region): Uint8Array {
  const out = new Uint8Array(regionBytes(r));
  for (let i = 0; i < r.rows; i++) out.set(b.subarray(r.offset + i * r.pitch, r.offset + i * r.pitch + r.rowBytes), i * r.rowBytes);
  return out;
}

function writeRegion(b: Uint8Array, r: Region, data: Uint8Array): void {
  for (let i = 0; i < r.rows; i++) b.set(data.subarray(i * r.rowBytes, (i + 1) * r.rowBytes), r.offset + i * r.pitch);
}

interface Arrival {
  parts: AllToAllPart[];
  /** Set once this rank stopped waiting (timeout, abort); its promise is settled. */
  gone: string | null;
  resolve(): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** Options of createSimulatedGroup. */
export interface SimulatedGroupOptions {
  /** Per-operation deadline in ms (1..2^31−1). Default 10000. */
  timeoutMs?: number;
}

/**
 * The shared state of P simulated ranks: operation n of every rank meets at slot n; when the last rank
 * arrives the exchange runs (source ranks in order, parts in order) and every rank's promise resolves.
 * A rank that stops waiting (its timeout, abort) leaves its arrival marked `gone`: the exchange then
 * fails on the ranks still waiting, as a collective with a departed peer would.
 */
class SimulatedGroup {
  readonly slots = new Map<number, Map<number, Arrival>>();
  constructor(readonly size: number, readonly timeoutMs: number) {}

  /** Ranks that have not joined operation `seq`. */
  missing(seq: number): number[] {
    const slot = this.slots.get(seq);
    return [...Array(this.size).keys()].filter((r) => !slot?.has(r));
  }

  arrive(rank: number, seq: number, a: Arrival): void {
    let slot = this.slots.get(seq);
    if (!slot) this.slots.set(seq, (slot = new Map()));
    slot.set(rank, a);
    if (slot.size === this.size) {
      this.slots.delete(seq);
      this.exchange(seq, slot);
    }
  }

  private exchange(seq: number, slot: Map<number, Arrival>): void {
    const all = [...slot.values()].filter((a) => a.gone === null);
    for (const a of all) clearTimeout(a.timer);
    try {
      for (const [r, a] of slot) {
        if (a.gone !== null) throw new Error(`allToAll #${seq} failed: rank ${r} stopped waiting (${a.gone})`);
      }
      const nParts = slot.get(0)!.parts.length;
      for (const [r, a] of slot) {
        if (a.parts.length !== nParts) {
          throw new RangeError(`simulated allToAll #${seq}: rank ${r} passed ${a.parts.length} parts, rank 0 passed ${nParts}`);
        }
      }
      const moves: Array<() => void> = [];
      for (let i = 0; i < nParts; i++) {
        for (let s = 0; s < this.size; s++) {
          const sp = slot.get(s)!.parts[i];
          for (let r = 0; r < this.size; r++) {
            const rp = slot.get(r)!.parts[i];
            const n = regionBytes(sp.send[r]), m = regionBytes(rp.recv[s]);
            if (n !== m) {
              throw new RangeError(`simulated allToAll #${seq}, part ${i}: rank ${s} sends ${n} bytes to rank ${r}, which expects ${m} bytes from it`);
            }
            // Read every source before writing any destination (a buffer may be both on different ranks).
            const data = readRegion(bytesOf(sp.src), sp.send[r]);
            moves.push(() => writeRegion(bytesOf(rp.dst), rp.recv[s], data));
          }
        }
      }
      for (const m of moves) m();
      for (const a of all) a.resolve();
    } catch (e) {
      for (const a of all) a.reject(e as Error);
    }
  }
}

/** One rank of a simulated group (host memory, one process). */
export class SimulatedCommunicator implements Communicator {
  readonly memory = 'host' as const;
  private seq = 0;
  private failure: string | null = null;
  private inFlight: Arrival | null = null;

  /** @internal Use createSimulatedGroup(). */
  constructor(private readonly group: SimulatedGroup, readonly rank: number) {}

  get size(): number { return this.group.size; }
  get timeoutMs(): number { return this.group.timeoutMs; }
  get aborted(): boolean { return this.failure !== null; }

  allToAll(parts: readonly AllToAllPart[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.failure !== null) throw new Error(`communicator of rank ${this.rank} was aborted: ${this.failure}`);
      if (this.inFlight) throw new Error(`rank ${this.rank}: a communicator runs one operation at a time; await the previous one`);
      const checked = checkParts(parts, this.size, 'host');
      const seq = this.seq++;
      const g = this.group;
      const a: Arrival = {
        parts: checked,
        gone: null,
        resolve: () => { this.inFlight = null; resolve(); },
        reject: (e) => { this.inFlight = null; reject(e); },
        timer: setTimeout(() => {
          const missing = g.missing(seq);
          const msg = `allToAll #${seq} timed out after ${g.timeoutMs} ms on rank ${this.rank}: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not join (dead or hung)`;
          this.failure = msg;
          a.gone = 'timed out';
          a.reject(new Error(msg));
        }, g.timeoutMs),
      };
      this.inFlight = a;
      g.arrive(this.rank, seq, a);
    });
  }

  async barrier(): Promise<void> {
    const empty = Array.from({ length: this.size }, () => ({ offset: 0, rows: 0, rowBytes: 0, pitch: 0 }));
    const b = new Uint8Array(0);
    await this.allToAll([{ src: b, dst: b, send: empty, recv: empty }]);
  }

  abort(reason = 'aborted by the caller'): void {
    if (this.failure !== null) return;
    this.failure = reason;
    const a = this.inFlight;
    if (a) {
      clearTimeout(a.timer);
      a.gone = 'aborted';
      a.reject(new Error(`communicator of rank ${this.rank} was aborted: ${reason}`));
    }
  }

  /** Simulates this rank dying: it never joins another operation, so the others time out. */
  kill(): void {
    this.abort('this rank was killed (simulated)');
  }

  dispose(): void {
    this.abort('the communicator was disposed');
  }
}

/** P simulated ranks in this process (tests, CPU backend): rank r is element r. */
export function createSimulatedGroup(size: number, opts: SimulatedGroupOptions = {}): SimulatedCommunicator[] {
  checkInt('size', size, 1, 4096);
  const o = checkObject('options', opts);
  const timeoutMs = o.timeoutMs === undefined ? 10000 : checkInt('options.timeoutMs', o.timeoutMs, 1, 2 ** 31 - 1);
  const g = new SimulatedGroup(size, timeoutMs);
  return Array.from({ length: size }, (_, r) => new SimulatedCommunicator(g, r));
}
