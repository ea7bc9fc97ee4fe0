// NcclCommunicator: the Communicator of lib/comm.ts over NCCL, loaded at run time (no build-time
// dependency): MONARCH_NCCL_PATH, then libnccl.so.2 on the system library path, then the
// nvidia-nccl-cu13 / -cu12 Python wheels (found through python3). The unique id is bootstrapped over a
// localhost TCP rendezvous (lib/rendezvous.ts) or given directly / through MONARCH_NCCL_ID (hex).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkParts, type AllToAllPart, type Communicator, type Region } from './comm';
import { deviceBuffer, DeviceTensor } from './device';
import { native, type NativeNcclComm } from './native';
import { fetchUniqueId, ID_BYTES, serveUniqueId } from './rendezvous';
import { WorkQueue } from './ops';
import { checkInt, checkObject, show } from './validate';

/** Where NCCL was found: the library path and its version code (ncclGetVersion, e.g. 22703 = 2.27.3). */
export interface NcclInfo {
  available: boolean;
  path?: string;
  version?: number;
  /** Why not, when unavailable: every candidate tried and its failure. */
  reason?: string;
}

const PY_PROBE = "import os, nvidia.nccl as m; print(os.path.join(list(m.__path__)[0], 'lib'))";

let wheelDir: string | null | undefined;
/** The Python wheel's library directory (nvidia-nccl-cu12/cu13 install nvidia/nccl/lib), or null (probed once). */
function pythonWheelDir(): string | null {
  if (wheelDir !== undefined) return wheelDir;
  const py = process.env.MONARCH_PYTHON ?? 'python3';
  try {
    const out = execFileSync(py, ['-c', PY_PROBE], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    wheelDir = out.length > 0 ? out : null;
  } catch {
    wheelDir = null;
  }
  return wheelDir;
}

/** Candidate libraries in search order (MONARCH_NCCL_PATH may name the file or its directory). */
export function ncclCandidates(withPython = true): string[] {
  const out: string[] = [];
  const env = process.env.MONARCH_NCCL_PATH;
  if (env) {
    let isDir = false;
    try { isDir = fs.statSync(env).isDirectory(); } catch { /* dlopen reports it */ }
    out.push(isDir ? path.join(env, 'libnccl.so.2') : env);
  }
  out.push('libnccl.so.2');
  if (withPython) {
    const dir = pythonWheelDir();
    if (dir) out.push(path.join(dir, 'libnccl.so.2'));
  }
  return out;
}

let loaded: NcclInfo | undefined;

/** Loads NCCL (once) and says where it came from; never throws. */
export function ncclInfo(): NcclInfo {
  if (loaded?.available) return loaded;
  const n = native().nccl;
  try {
    const r = n.load(ncclCandidates(false));
    loaded = { available: true, path: r.path, version: r.version };
  } catch (first) {
    try {
      const r = n.load(ncclCandidates(true));
      loaded = { available: true, path: r.path, version: r.version };
    } catch (e) {
      const py = pythonWheelDir() === null ? '\n  python3 -c "import nvidia.nccl": not installed' : '';
      loaded = { available: false, reason: `${(e as Error).message || (first as Error).message}${py}` };
    }
  }
  return loaded;
}

function requireNccl(): void {
  const i = ncclInfo();
  if (!i.available) {
    throw new Error(`${i.reason}\nInstall NCCL (libnccl2, or pip install nvidia-nccl-cu12 / nvidia-nccl-cu13) or set MONARCH_NCCL_PATH to libnccl.so.2`);
  }
}

/** A new NCCL unique id (rank 0 creates it; hand it to the others, e.g. as MONARCH_NCCL_ID). Hex string. */
export function ncclUniqueId(): string {
  requireNccl();
  return Buffer.from(native().nccl.uniqueId()).toString('hex');
}

function parseId(id: unknown): Uint8Array {
  if (typeof id === 'string') {
    if (!/^[0-9a-fA-F]{256}$/.test(id)) throw new RangeError(`id must be ${ID_BYTES * 2} hex digits (a ncclUniqueId), received a string of length ${id.length}`);
    return new Uint8Array(Buffer.from(id, 'hex'));
  }
  if (id instanceof Uint8Array || (ArrayBuffer.isView(id) && (id as Uint8Array).BYTES_PER_ELEMENT === 1)) {
    const u = id as Uint8Array;
    if (u.length !== ID_BYTES) throw new RangeError(`id must hold ${ID_BYTES} bytes, received ${u.length}`);
    return new Uint8Array(u);
  }
  throw new TypeError(`id must be a hex string or a Uint8Array of ${ID_BYTES} bytes, received ${show(id)}`);
}

/** Options of NcclCommunicator.create. */
export interface NcclCommunicatorOptions {
  /** This process's rank 0..size−1 (one process per GPU; each sees its GPU as device 0). */
  rank: number;
  /** Number of ranks (1..65536). */
  size: number;
  /** Deadline of every operation (init, each all-to-all, the rendezvous) in ms. Default 60000. */
  timeoutMs?: number;
  /**
   * The unique id (hex string or 128 bytes) from ncclUniqueId(), e.g. created by a parent process. Default:
   * process.env.MONARCH_NCCL_ID, else the TCP rendezvous.
   */
  id?: string | Uint8Array;
  /**
   * TCP rendezvous: rank 0 listens on host:port and hands the id to the others. Default: host
   * '127.0.0.1', port from MONARCH_NCCL_PORT (required when neither id nor MONARCH_NCCL_ID is given).
   */
  rendezvous?: { host?: string; port?: number };
}

function toNativeRegions(list: readonly Region[]): Float64Array {
  const f = new Float64Array(list.length * 4);
  list.forEach((r, i) => f.set([r.offset, r.rows, r.rowBytes, r.pitch], i * 4));
  return f;
}

/** The Communicator over NCCL (device memory: DeviceTensors on this process's GPU). */
export class NcclCommunicator implements Communicator {
  readonly memory = 'device' as const;
  private readonly queue = new WorkQueue();
  private comm: NativeNcclComm | null;
  private barrierBuf: DeviceTensor | null = null;

  private constructor(comm: NativeNcclComm, readonly rank: number, readonly size: number, readonly timeoutMs: number,
    /** The loaded library and version. */
    readonly library: { path: string; version: number }) {
    this.comm = comm;
  }

  /**
   * Creates rank `rank` of `size`: loads NCCL, bootstraps the id, runs ncclCommInitRank (non-blocking,
   * failing after timeoutMs when a rank does not join). A collective: every rank calls it.
   */
  static async create(options: NcclCommunicatorOptions): Promise<NcclCommunicator> {
    const o = checkObject('options', options);
    const size = checkInt('options.size', o.size, 1, 65536);
    const rank = checkInt('options.rank', o.rank, 0, size - 1);
    const timeoutMs = o.timeoutMs === undefined ? 60000 : checkInt('options.timeoutMs', o.timeoutMs, 1, 2 ** 31 - 1);
    requireNccl();
    const info = ncclInfo();
    let id: Uint8Array;
    const given = o.id ?? process.env.MONARCH_NCCL_ID;
    if (given !== undefined) {
      id = parseId(given);
    } else if (size === 1) {
      id = new Uint8Array(native().nccl.uniqueId());
    } else {
      const rv = o.rendezvous === undefined ? {} : checkObject('options.rendezvous', o.rendezvous);
      const host = rv.host === undefined ? '127.0.0.1' : String(rv.host);
      const envPort = process.env.MONARCH_NCCL_PORT;
      const portRaw = rv.port ?? (envPort === undefined ? undefined : Number(envPort));
      if (portRaw === undefined) {
        throw new RangeError('NcclCommunicator.create needs options.id, MONARCH_NCCL_ID, options.rendezvous.port or MONARCH_NCCL_PORT to bootstrap more than one rank');
      }
      const port = checkInt('options.rendezvous.port', portRaw, 1, 65535);
      if (rank === 0) {
        id = new Uint8Array(native().nccl.uniqueId());
        await serveUniqueId(id, host, port, size, timeoutMs);
      } else {
        id = await fetchUniqueId(host, port, rank, size, timeoutMs);
      }
    }
    const comm = new (native().nccl.Comm)();
    try {
      await comm.init(id, size, rank, timeoutMs);
    } catch (e) {
      comm.dispose();
      throw e;
    }
    return new NcclCommunicator(comm, rank, size, timeoutMs, { path: info.path!, version: info.version! });
  }

  get aborted(): boolean {
    return this.comm === null || this.comm.failure !== null;
  }

  private live(): NativeNcclComm {
    if (this.comm === null) throw new Error('NcclCommunicator was disposed');
    return this.comm;
  }

  allToAll(parts: readonly AllToAllPart[]): Promise<void> {
    return this.queue.run(async () => {
      const comm = this.live();
      const checked = checkParts(parts, this.size, 'device');
      await comm.allToAll(checked.map((p) => ({
        src: deviceBuffer(p.src as DeviceTensor), dst: deviceBuffer(p.dst as DeviceTensor),
        send: toNativeRegions(p.send), recv: toNativeRegions(p.recv),
      })), this.timeoutMs);
    });
  }

  /** One byte to and from every rank. */
  async barrier(): Promise<void> {
    if (!this.barrierBuf) this.barrierBuf = DeviceTensor.empty([this.size * 2], 'float16');
    const b = this.barrierBuf;
    const regions = Array.from({ length: this.size }, (_, p) => ({ offset: 2 * p, rows: 1, rowBytes: 1, pitch: 1 }));
    const dst = regions.map((r) => ({ ...r, offset: r.offset + 1 }));
    await this.allToAll([{ src: b, dst: b, send: regions, recv: dst }]);
  }

  abort(reason = 'aborted by the caller'): void {
    this.comm?.abort(reason);
  }

  /** Aborts the NCCL communicator (all earlier operations have completed) and frees its stream. Idempotent. */
  dispose(): void {
    if (this.comm === null) return;
    this.comm.dispose();
    this.comm = null;
    this.barrierBuf?.dispose();
    this.barrierBuf = null;
  }
}
