// ESM entry of monarch-attention: the CommonJS build (dist/lib/index.js) re-exported by name, so that
// `import { MonarchAttention } from 'monarch-attention'` and `require('monarch-attention')` share one
// module instance (one native addon, one set of classes). test/package-exports.test.ts checks that the
// names below are exactly the CommonJS exports.
import cjs from '../dist/lib/index.js';

export const {
  castTensor, fromBfloat16, fromFloat16, tensor, toBfloat16, toFloat16, toFloat32,
  DeviceTensor, CudaStream, CudaEvent, MonarchAttention, KVCache, KVCachePool, denseAttention, denseAttentionSync, denseTime, info, version,
  allocTensor, hostMemoryKind, memoryStats, fromOrt, toOrt,
  SequenceParallelAttention, SequenceParallelKVCache, createSimulatedGroup, SimulatedCommunicator, headGroups,
  NcclCommunicator, ncclInfo, ncclUniqueId,
} = cjs;
export default cjs;
