// Staging of single tensors for the KV cache (a write has no q, an attend without write has no k, v):
// the one-tensor pieces of inputs.ts's stage(). CPU host tensors are used in place; CUDA host tensors
// are uploaded into scratch; CUDA DeviceTensors are used in place.
import { native, type NativeAct, type NativeDeviceBuffer } from './native';
import type { HostTensor, TensorLayout } from './types';
import { DeviceTensor, deviceBuffer, wrapBuffer } from './device';
import { act, type AnyTensor, type Scratch } from './inputs';
import { actStrides, allocHost, dtypeSize, localArray, numel, tensor, type ActDims } from './tensor';

/** One input on the backend's side (`key` names its CUDA upload slot). */
export function stageInput(cuda: boolean, scratch: Scratch, key: string, t: AnyTensor, dims: ActDims, layout: TensorLayout): NativeAct {
  const st = actStrides(dims, layout);
  if (t instanceof DeviceTensor) return act(deviceBuffer(t), st);
  const h = t as HostTensor;
  if (!cuda) return act(h.data, st);
  const b = scratch.get(key, h.dtype, h.data.length) as NativeDeviceBuffer;
  b.upload(h.data);
  return act(b, st);
}

export interface StagedOutput {
  o: NativeAct;
  collect(): AnyTensor;
  collectAsync(): Promise<AnyTensor>;
}

/**
 * The output of an attend with q's shape, dtype and layout: a new host array (host q), a scratch buffer
 * downloaded afterwards (CUDA, host q), or a device buffer returned as a DeviceTensor (device q: `out`
 * when given, else a new one the caller owns).
 */
export function stageOutput(cuda: boolean, scratch: Scratch, q: AnyTensor, dims: ActDims, layout: TensorLayout, out?: DeviceTensor): StagedOutput {
  const st = actStrides(dims, layout), shape = q.shape.slice(), dtype = q.dtype, n = numel(shape);
  if (q instanceof DeviceTensor) {
    const buf = out ? deviceBuffer(out) : native().DeviceBuffer.alloc(n * dtypeSize(dtype));
    const result = (): AnyTensor => out ?? wrapBuffer(buf, shape, dtype);
    return { o: act(buf, st), collect: result, collectAsync: async () => result() };
  }
  if (!cuda) {
    const data = allocHost(dtype, n);
    const result = (): AnyTensor => tensor(data, shape, dtype);
    return { o: act(data, st), collect: result, collectAsync: async () => result() };
  }
  const buf = scratch.get('stage.o', dtype, n) as NativeDeviceBuffer;
  const kind = dtype === 'float32' ? 'f32' : 'u16';
  return {
    o: act(buf, st),
    collect: () => tensor(localArray(buf.downloadSync(kind)), shape, dtype),
    collectAsync: async () => tensor(localArray(await buf.download(kind)), shape, dtype),
  };
}
