// Checksums of chunk outputs (sum and sum of squares, float64 over the stored float32/16/bf16 values in
// index order) on worker threads, so the server's event loop never walks a chunk's elements: at 480p one
// chunk's output is 3·1560·12·128 = 7.2 M values (14 MB of bf16), some 20–70 ms of JavaScript. The output's
// buffer (an ordinary ArrayBuffer: a download() or a host attend() result) is transferred, not copied.
// The worker's code is inline (eval), so it runs the same from the TypeScript sources (jest) and dist/.
import { Worker } from 'node:worker_threads';
import type { DType, HostTensor } from '../../lib';

export interface Checksum { sum: number; sumSq: number }

const WORKER = `
const { parentPort } = require('node:worker_threads');
let bf16 = null, f16 = null;
function table(kind) {
  const t = new Float32Array(65536), u = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    if (kind === 'bfloat16') { u[h] = h << 16; continue; }
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
}
parentPort.on('message', ({ id, buffer, byteOffset, length, dtype }) => {
  let sum = 0, sumSq = 0;
  if (dtype === 'float32') {
    const x = new Float32Array(buffer, byteOffset, length);
    for (let i = 0; i < x.length; i++) { const v = x[i]; sum += v; sumSq += v * v; }
  } else {
    const lut = dtype === 'bfloat16' ? (bf16 ??= table('bfloat16')) : (f16 ??= table('float16'));
    const x = new Uint16Array(buffer, byteOffset, length);
    for (let i = 0; i < x.length; i++) { const v = lut[x[i]]; sum += v; sumSq += v * v; }
  }
  parentPort.postMessage({ id, sum, sumSq });
});
`;

interface Pending { resolve: (c: Checksum) => void; reject: (e: Error) => void }

export class ChecksumPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private rr = 0;
  private closed = false;

  constructor(threads: number) {
    for (let i = 0; i < Math.max(1, threads); i++) this.workers.push(this.spawn());
  }

  private spawn(): Worker {
    const w = new Worker(WORKER, { eval: true });
    w.unref();  // never keeps the process alive on its own
    w.on('message', (m: { id: number } & Checksum) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.resolve({ sum: m.sum, sumSq: m.sumSq });
    });
    const fail = (e: Error): void => {
      // A crashed worker fails every pending checksum (they are few: one per session at most) and is replaced.
      for (const p of this.pending.values()) p.reject(new Error(`checksum worker failed: ${e.message}`));
      this.pending.clear();
      const i = this.workers.indexOf(w);
      if (i >= 0 && !this.closed) this.workers[i] = this.spawn();
    };
    w.on('error', fail);
    w.on('exit', (code) => { if (!this.closed && code !== 0) fail(new Error(`exit code ${code}`)); });
    return w;
  }

  /** Checksum of t's values; t's buffer is transferred to a worker (t is unusable afterwards). */
  checksum(t: HostTensor): Promise<Checksum> {
    if (this.closed) return Promise.reject(new Error('checksum pool was closed'));
    const id = this.next++, w = this.workers[this.rr++ % this.workers.length];
    const data = t.data as Float32Array | Uint16Array;
    const dtype: DType = t.dtype;
    return new Promise<Checksum>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg = { id, buffer: data.buffer, byteOffset: data.byteOffset, length: data.length, dtype };
      try {
        w.postMessage(msg, [data.buffer as ArrayBuffer]);
      } catch {
        w.postMessage(msg);  // not transferable (addon or shared memory): structured clone copies it
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error('checksum pool was closed'));
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
