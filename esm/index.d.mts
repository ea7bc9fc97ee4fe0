// Types of the ESM entry (esm/index.mjs): the same as the CommonJS entry's.
export * from '../dist/lib/index.js';
import * as cjs from '../dist/lib/index.js';
export default cjs;
