// Staging of single tensors for the KV cache (a write has no q, an attend without write has no k, v):
// the one-tensor piece of inputs.ts's stage() (the output is inputs.ts's stageOutput). CPU host tensors
// are used in place (async callers pass secured ones, lib/host.ts); CUDA host tensors are uploaded into
// scratch; CUDA DeviceTensors are used in place.
import type { NativeAct, NativeDeviceBuffer } from './native';
import type { HostTensor, TensorLayout } from './types';
import { DeviceTensor, deviceBuffer } from './device';
import { act, type AnyTensor, type Scratch } from './inputs';
import { actStrides, type ActDims } from './tensor';

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
