// One synchronous forward at each shape of test/cuda-stream-interop.test.ts (sequence layouts, bf16, T = 1
// and 2, d 64), printed before and after, so that a run under `timeout` shows which shape hangs and with
// which kernels (run it with and without MONARCH_PREVIEW_KERNELS=1 / MONARCH_HOPPER_KERNELS=0).
//   node scripts/hang-probe.js
'use strict';
const m = require('..');
const shapes = [
  { S: 1024, b: 32, H: 2 },  // the file's own tests
  { S: 4096, b: 64, H: 4 },  // its external-stream example
];
for (const { S, b, H } of shapes) {
  for (const T of [1, 2]) {
    const D = 64, shape = [1, S, H, D];
    const attn = new m.MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: b }, heads: H, headDim: D, dtype: 'bfloat16', backend: 'cuda', numIters: T });
    const [q, k, v] = [0, 1, 2].map(() => m.DeviceTensor.empty(shape, 'bfloat16'));
    [q, k, v].forEach((t, i) => t.fill(0.01 * (i + 1)));
    process.stdout.write(`S=${S} b=${b} H=${H} T=${T}: start\n`);
    const t0 = Date.now();
    const o = attn.forwardSync(q, k, v);
    const head = Array.from(o.downloadSync().data.slice(0, 2));
    process.stdout.write(`S=${S} b=${b} H=${H} T=${T}: done in ${Date.now() - t0} ms (${head})\n`);
    for (const t of [q, k, v, o]) t.dispose();
    attn.dispose();
  }
}
