// Stream interop example: attention inside another CUDA runtime's stream (docs/API.md "Stream interop").
//
// A model runtime (PyTorch through a bridge, an ONNX Runtime CUDA session in another addon, your own
// kernels) owns device memory and a CUDA stream. It hands us raw addresses (DeviceTensor.fromPointer: no
// copy, never freed by us) and its stream's handle (MonarchOptions.stream), and our work is ordered with
// its work on the GPU: nothing waits for the whole device, and the host waits only where it reads the
// result. Node has no CUDA library of its own, so the "runtime" here is a stand-in built from this
// package's helpers: its memory is DeviceTensor.empty() allocations, its stream a CudaStream, its
// kernels host→device copies. A real runtime passes its own pointers and stream instead; the attention
// side of the code is the same.
//
// Two patterns, each checked against a plain host-tensor forward (bit for bit):
//   1. one stream: the instance enqueues on the runtime's stream, so the runtime's writes before the
//      call and its reads after it are ordered without any event;
//   2. two streams: the instance keeps its own stream; the call waits for an event the runtime recorded
//      after writing q, k, v (waitEvent) and records one the runtime's stream waits for before reading
//      the output (recordEvent).
import { allocTensor, CudaEvent, CudaStream, DeviceTensor, info, MonarchAttention, type HostTensor } from '../../lib';

export interface ExampleResult {
  skipped?: string;
  sameStream?: { identical: boolean; ms: number };
  twoStreams?: { identical: boolean; ms: number };
}

/** A stand-in model runtime: device memory it owns, one stream, and a "kernel" that writes a tensor. */
class StandInRuntime {
  readonly stream = new CudaStream();
  private readonly owned: DeviceTensor[] = [];

  /** Device memory owned by the runtime; returns its address, as a runtime tensor's data pointer would. */
  alloc(shape: number[]): bigint {
    const t = DeviceTensor.empty(shape, 'bfloat16');
    this.owned.push(t);
    return t.pointer;
  }

  /** A runtime "kernel": enqueues a write of `src` (pinned host memory) into `dst` on the runtime's stream. */
  write(dst: DeviceTensor, src: HostTensor): void {
    this.stream.upload(dst, src);
  }

  /** Enqueues a read of `src` into pinned host memory on the runtime's stream (valid after a synchronize). */
  read(dst: HostTensor, src: DeviceTensor): void {
    this.stream.download(dst, src);
  }

  dispose(): void {
    this.stream.dispose();  // synchronises first
    for (const t of this.owned) t.dispose();
  }
}

function randomBf16(shape: number[], seed: number): HostTensor {
  const t = allocTensor(shape, 'bfloat16');  // pinned: stream copies from it are truly asynchronous
  const u = t.data as Uint16Array, f = new Float32Array(1), w = new Uint32Array(f.buffer);
  let s = seed >>> 0;
  for (let i = 0; i < u.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[0] = s / 4294967296 - 0.5;
    u[i] = w[0] >>> 16;
  }
  return t;
}

const same = (a: HostTensor, b: HostTensor): boolean => a.data.every((x, i) => x === b.data[i]);

export async function runExample(): Promise<ExampleResult> {
  const i = info();
  if (!i.compiledWithCuda || i.deviceCount < 1) return { skipped: `needs a GPU (${i.compiledWithCuda ? i.cudaMessage : 'built without CUDA'})` };
  const S = 4096, H = 4, D = 64, shape = [1, S, H, D];
  const options = { layout: { kind: 'sequence' as const, length: S, blockSize: 64 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, numIters: 2 };
  const [hq, hk, hv] = [randomBf16(shape, 1), randomBf16(shape, 2), randomBf16(shape, 3)];
  const reference = new MonarchAttention(options);
  const want = await reference.forward(hq, hk, hv);
  reference.dispose();

  const runtime = new StandInRuntime();
  // The runtime's tensors, seen through their addresses (zero-copy; the runtime keeps ownership).
  const [q, k, v, o] = [0, 1, 2, 3].map(() => DeviceTensor.fromPointer(runtime.alloc(shape), shape, 'bfloat16'));
  const result: ExampleResult = {};

  // 1. One stream: our work is enqueued on the runtime's stream between its writes and its read.
  {
    const attn = new MonarchAttention({ ...options, stream: runtime.stream.handle });
    const host = allocTensor(shape, 'bfloat16');
    const t0 = performance.now();
    runtime.write(q, hq); runtime.write(k, hk); runtime.write(v, hv);
    const done = attn.forward(q, k, v, { out: o });  // idle instance: enqueued before forward() returns
    runtime.read(host, o);                            // ordered after the forward by the stream
    await Promise.all([done, runtime.stream.synchronizeAsync()]);
    result.sameStream = { identical: same(host, want), ms: performance.now() - t0 };
    await attn.close();                               // the runtime's stream is not destroyed
  }

  // 2. Two streams, ordered by events (no device-wide synchronisation, no host wait in between).
  {
    const attn = new MonarchAttention(options);       // its own stream
    const written = new CudaEvent(), finished = new CudaEvent();
    const host = allocTensor(shape, 'bfloat16');
    o.fill(NaN);                                      // so a read before the forward would show
    const t0 = performance.now();
    runtime.write(q, hq); runtime.write(k, hk); runtime.write(v, hv);
    written.record(runtime.stream.handle);
    const done = attn.forward(q, k, v, { out: o, waitEvent: written.handle, recordEvent: finished.handle });
    finished.wait(runtime.stream.handle);
    runtime.read(host, o);
    await Promise.all([done, runtime.stream.synchronizeAsync()]);
    result.twoStreams = { identical: same(host, want), ms: performance.now() - t0 };
    await attn.close();
    written.dispose();
    finished.dispose();
  }
  for (const t of [q, k, v, o]) t.dispose();  // fromPointer wrappers: frees nothing
  runtime.dispose();
  return result;
}

if (require.main === module) {
  runExample().then((r) => {
    console.log(JSON.stringify(r));
    if (!r.skipped && !(r.sameStream?.identical && r.twoStreams?.identical)) process.exitCode = 1;
  }, (e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
