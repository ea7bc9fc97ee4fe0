// Convenience re-export: comparison helpers and activation slicing in one import.
export * from './compare';
export { sliceRows, sliceTokens, concatTokens } from './act';
