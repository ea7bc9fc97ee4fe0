// Public surface of monarch-attention (docs/API.md).
export type {
  Backend, DType, DenseOptions, DenseResult, ForwardOptions, HostData, HostTensor, InfoResult, KVCacheBytes, KVCacheOptions,
  KVCachePoolOptions, MonarchOptions, StepOptions, SupportEntry,
  SequenceLayout, TensorLayout, VideoLayout,
} from './types';
export { allocTensor, hostMemoryKind, memoryStats } from './host';
export { fromOrt, toOrt, type OrtTensorLike } from './ort';
export type { CallEvent, MemoryFigures } from './serving';
export { castTensor, fromBfloat16, fromFloat16, tensor, toBfloat16, toFloat16, toFloat32 } from './tensor';
export { DeviceTensor, type DeviceTensorOptions } from './device';
export { CudaEvent, CudaStream } from './stream';
export { MonarchAttention } from './monarch';
export { KVCache } from './kvcache';
export type { AttendOptions, FlushOptions, WriteOptions } from './kvcache';
export { KVCachePool } from './kvpool';
export { denseAttention, denseAttentionSync, denseTime } from './dense';
export { info, version } from './info';
export type { Geometry } from './layout';
export type { TimeOptions } from './validate';
export type { AnyTensor } from './inputs';
export type { ResolvedOptions } from './options';
export { SequenceParallelAttention, type SequenceParallelOptions } from './parallel';
export { SequenceParallelKVCache, type ParallelAttendOptions } from './parallel_kv';
export { createSimulatedGroup, SimulatedCommunicator, type AllToAllPart, type CommBuffer, type Communicator, type Region, type SimulatedGroupOptions } from './comm';
export { headGroups, type HeadGroups } from './partition';
export { NcclCommunicator, ncclInfo, ncclUniqueId, type NcclCommunicatorOptions, type NcclInfo } from './nccl';
