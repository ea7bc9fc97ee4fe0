// Staging of single tensors for the KV cache (a write has no q, an attend without write has no k, v):
// the one-tensor piece of inputs.ts's stage() (the output is inputs.ts's stageOutput). CPU host tensors
// are used in place (async callers pass secured ones, lib/host.ts); CUDA host tensors (secured: pinned)
// are uploaded into scratch by an upload op on the plan's stream (pushed to `pre`); CUDA DeviceTensors
// are used in place.
import type { NativeAct } from './native';
import type { HostTensor, TensorLayout } from './types';
import { DeviceTensor, deviceBuffer } from './device';
import { act, uploadInput, type AnyTensor, type Scratch } from './inputs';
import type { Op } from './ops';
import { actStrides, type ActDims } from './tensor';

/** One input on the backend's side (`key` names its CUDA upload slot; the upload op goes to `pre`). */
export function stageInput(cuda: boolean, scratch: Scratch, key: string, t: AnyTensor, dims: ActDims, layout: TensorLayout, pre: Op[]): NativeAct {
  const st = actStrides(dims, layout);
  if (t instanceof DeviceTensor) return act(deviceBuffer(t), st);
  const h = t as HostTensor;
  if (!cuda) return act(h.data, st);
  return act(uploadInput(scratch, key, h, pre), st);
}
