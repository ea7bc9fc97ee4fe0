// Compile-time API checks (test/types.test.ts compiles this file with `tsc --noEmit --strict`; it is
// never run). Every `@ts-expect-error` line must fail to compile: a line that compiles makes tsc report
// "Unused '@ts-expect-error' directive", and the test fails.
import {
  allocTensor, castTensor, DeviceTensor, denseAttention, denseAttentionSync, fromOrt, KVCache, MonarchAttention, tensor, toOrt,
  type AnyTensor, type DType, type HostData, type HostTensor, type StepOptions,
} from '../../lib';

declare const f32: Float32Array;
declare const u16: Uint16Array;
declare const dev: DeviceTensor;
declare const attn: MonarchAttention;
declare const cache: KVCache;
declare const someDtype: DType;
declare const any: AnyTensor;

// tensor(): the dtype follows the data; a Uint16Array needs its dtype.
const a: HostTensor<'float32'> = tensor(f32, [2]);
const a2: HostTensor<'float32'> = tensor(f32, [2], 'float32');
const b: HostTensor<'bfloat16'> = tensor(u16, [2], 'bfloat16');
const h: HostTensor<'float16'> = tensor(u16, [2], 'float16');
const g: HostTensor = tensor(someDtype === 'float32' ? f32 : u16, [2], someDtype);
const hd: HostData<'float16'> = u16;
// @ts-expect-error: float32 host data is a Float32Array
const hd2: HostData<'float32'> = u16;
// @ts-expect-error: a Uint16Array without dtype
tensor(u16, [2]);
// @ts-expect-error: a Float32Array with a 16-bit dtype
tensor(f32, [2], 'bfloat16');
// @ts-expect-error: a Uint16Array with float32
tensor(u16, [2], 'float32');
// @ts-expect-error: not a dtype
tensor(f32, [2], 'float64');
// @ts-expect-error: Int32Array is no host data kind
tensor(new Int32Array(2), [2]);

// HostTensor.data is narrowed by dtype.
const fa: Float32Array = a.data;
const ba: Uint16Array = b.data;
// @ts-expect-error: bfloat16 data is a Uint16Array
const wrong: Float32Array = b.data;
function narrow(t: HostTensor): Float32Array | Uint16Array {
  if (t.dtype === 'float32') {
    const x: Float32Array = t.data;
    return x;
  }
  const y: Uint16Array = t.data;
  return y;
}
const c16: HostTensor<'float16'> = castTensor(a, 'float16');
// @ts-expect-error: castTensor to bfloat16 gives Uint16Array data
const c32: Float32Array = castTensor(a, 'bfloat16').data;

// forward / denseAttention / KVCache.step: all host or all device, and the result follows.
const p1: Promise<HostTensor> = attn.forward(a, a, a);
const p2: Promise<DeviceTensor> = attn.forward(dev, dev, dev);
const p3: Promise<AnyTensor> = attn.forward(any, any, any);  // unknown at compile time: checked at run time
// @ts-expect-error: mixed host and device inputs
attn.forward(a, dev, dev);
// @ts-expect-error: mixed
attn.forward(dev, a, dev, {});
// @ts-expect-error: mixed
attn.forwardSync(dev, dev, a);
// @ts-expect-error: a device forward gives a DeviceTensor, not a HostTensor
const p4: Promise<HostTensor> = attn.forward(dev, dev, dev);
const d1: Promise<{ out: DeviceTensor }> = denseAttention(dev, dev, dev);
// @ts-expect-error: mixed
denseAttention(a, a, dev);
// @ts-expect-error: mixed
denseAttentionSync(dev, a, a);
const s1: Promise<HostTensor> = cache.step(a, a, a);
// @ts-expect-error: mixed
cache.step(a, dev, a);
// @ts-expect-error: mixed
cache.stepSync(a, a, dev);
cache.writeSync(a, a, { frame: 0 });
// @ts-expect-error: mixed k (host) and v (device)
cache.writeSync(a, dev, { frame: 0 });
// @ts-expect-error: mixed
void cache.write(dev, a, { frame: 0 });

// Serving options (out, signal) and addon memory type-check with the HostTensor<D> types.
declare const signal: AbortSignal;
const al: HostTensor<'float32'> = allocTensor([2]);
const al16: HostTensor<'bfloat16'> = allocTensor([2], 'bfloat16');
// @ts-expect-error: allocTensor(bfloat16) gives Uint16Array data
const al32: Float32Array = allocTensor([2], 'bfloat16').data;
const o1: Promise<HostTensor> = attn.forward(a, a, a, { out: al, signal });
const o2: Promise<DeviceTensor> = attn.forward(dev, dev, dev, { out: dev, signal });
const o3: HostTensor = attn.forwardSync(a, a, a, { out: al });
// @ts-expect-error: signal must be an AbortSignal
void attn.forward(a, a, a, { signal: 1 });
// @ts-expect-error: out must be a tensor
void attn.forward(a, a, a, { out: f32 });
const so: StepOptions = { out: al16, signal };
const s2: Promise<HostTensor> = cache.step(a, a, a, so);
const s3: DeviceTensor = cache.stepSync(dev, dev, dev, { out: dev });
const at: Promise<HostTensor> = cache.attend(a, { frame: 0, write: { k: a, v: a }, out: al, signal });
void cache.write(a, a, { frame: 0, signal });
const d2: Promise<{ out: HostTensor }> = denseAttention(a, a, a, { signal, returnLse: true });
const ort: HostTensor = fromOrt({ type: 'float16', dims: [2], data: u16 });
const ortBack: { dims: number[] } = toOrt(al16, 'float16');

export { a2, h, g, hd, hd2, fa, ba, wrong, narrow, c16, c32, p1, p2, p3, p4, d1, s1, al, al32, o1, o2, o3, s2, s3, at, d2, ort, ortBack };
