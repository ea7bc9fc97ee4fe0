#!/usr/bin/env node
// Child-process driver for test/memory-budget.test.ts: creates many MonarchAttention instances, runs one
// forward on each (touching its ~68 MB workspace; inputs and output are only 1 MB, so JS allocations
// alone would not make V8 collect) and drops them WITHOUT dispose(). The workspace is
// native memory reported to V8 (napi_adjust_external_memory), so the garbage collector runs and the
// finalizers free it: RSS stays bounded. Without the accounting V8 sees only a few small JS objects and
// RSS grows by the sum of all workspaces.
//   node test/child/gc-pressure.js <instances>
// Last stdout line: JSON {instances, workspaceMB, rssStartMB, rssPeakMB, rssEndMB}.
'use strict';
const path = require('node:path');
require(path.join(__dirname, 'ts-register.js'));
const m = require(path.join(__dirname, '..', '..', 'lib', 'index.ts'));

const instances = Number(process.argv[2] || 40);
const [B, N, H, D] = [1, 32 * 4 * 4, 8, 64];  // 32 tiles of 4 × 4 tokens: workspace ∝ A² tiles, input ∝ A
const opts = { layout: { kind: 'video', frames: 32, height: 4, width: 4 }, heads: H, headDim: D, batch: B, backend: 'cpu', threads: 2 };
const x = m.tensor(Float32Array.from({ length: B * N * H * D }, (_, i) => Math.sin(i)), [B, N, H, D]);
const rss = () => process.memoryUsage().rss / 2 ** 20;
const rssStart = rss();
let peak = rssStart, workspaceMB = 0;
(async () => {
for (let i = 0; i < instances; i++) {
  const attn = new m.MonarchAttention(opts);
  workspaceMB = attn.config.workspaceBytes / 2 ** 20;
  attn.forwardSync(x, x, x);
  peak = Math.max(peak, rss());
  // A server's event loop turns between requests; Node-API finalizers run from it (after a GC).
  await new Promise((resolve) => setImmediate(resolve));
}
console.log(JSON.stringify({ instances, workspaceMB, rssStartMB: rssStart, rssPeakMB: peak, rssEndMB: rss() }));
})();
