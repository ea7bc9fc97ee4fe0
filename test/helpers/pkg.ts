// The package under test, imported from its TypeScript sources (lib/index.ts) exactly as users see it.
export * from '../../lib';
export type {
  DType, Backend, TensorLayout, HostTensor, MonarchOptions, ForwardOptions, DenseOptions, InfoResult,
  SequenceLayout, VideoLayout,
} from '../../lib/types';
