#!/usr/bin/env node
// Smoke test of the native surface (lib/native.ts) straight on build/Release/monarch.node: info,
// conversions, a CPU Plan running the stages sync and async (fp32 and bf16), dense, gather, argument
// errors (right JS error class, message naming the argument, never a crash) and the lifecycle guards.
// With MONARCH_SMOKE_CUDA=1 it also runs the CUDA paths (DeviceBuffer, CUDA plan, events).
//   node test/native/binding_smoke.js [path/to/monarch.node]
// Last line: "N passed, N failed"; exit code 1 on any failure.
'use strict';
const path = require('node:path');
const assert = require('node:assert/strict');

const addonPath = process.argv[2] || path.join(__dirname, '..', '..', 'build', 'Release', 'monarch.node');
const b = require(addonPath);

let passed = 0;
let failed = 0;
const queue = [];
function test(name, fn) { queue.push([name, fn]); }

function rng(seed) {  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randF32(n, seed) {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() * 2 - 1;
  return x;
}
const bshd = (S, H, D) => [S * H * D, H * D, D];
const act = (data, S, H, D) => ({ data, strides: bshd(S, H, D) });

// float64 dense attention reference, [B][S][H][D] contiguous.
function denseRef(q, k, v, B, Nq, Nk, H, D, scale) {
  const o = new Float64Array(B * Nq * H * D);
  for (let bb = 0; bb < B; bb++) for (let h = 0; h < H; h++) for (let i = 0; i < Nq; i++) {
    const qi = ((bb * Nq + i) * H + h) * D;
    const s = new Float64Array(Nk);
    let m = -Infinity;
    for (let j = 0; j < Nk; j++) {
      const kj = ((bb * Nk + j) * H + h) * D;
      let d = 0;
      for (let c = 0; c < D; c++) d += q[qi + c] * k[kj + c];
      s[j] = d * scale;
      m = Math.max(m, s[j]);
    }
    let z = 0;
    for (let j = 0; j < Nk; j++) { s[j] = Math.exp(s[j] - m); z += s[j]; }
    for (let j = 0; j < Nk; j++) {
      const vj = ((bb * Nk + j) * H + h) * D;
      for (let c = 0; c < D; c++) o[qi + c] += (s[j] / z) * v[vj + c];
    }
  }
  return o;
}
function maxAbsDiff(a, b2) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b2[i]));
  return m;
}
function allFinite(a) { return a.every((x) => Number.isFinite(x)); }

// One MonarchAttention problem: B=2, H=3, D=16, tile b1×b2 = 4×5, Aq = Fk = 2 (N = 40 tokens).
const G = { B: 2, H: 3, D: 16, b1: 4, b2: 5, A: 2 };
const N = G.A * G.b1 * G.b2;
function makePlan(extra = {}) {
  return new b.Plan({ backend: 'cpu', dtype: 0, B: G.B, H: G.H, D: G.D, b1: G.b1, b2: G.b2,
    maxAq: G.A, maxFk: G.A, iterative: true, threads: 0, ...extra });
}
function stageArgs(q, k, v, o, extra = {}) {
  return { q: act(q, N, G.H, G.D), k: act(k, N, G.H, G.D), v: act(v, N, G.H, G.D),
    o: o && act(o, N, G.H, G.D), Aq: G.A, Fk: G.A, qTile0: 0, causalTiles: 0,
    scale: 1 / Math.sqrt(G.D), maxInvTemp: 1e4, ...extra };
}
const nElems = G.B * N * G.H * G.D;
const Q = randF32(nElems, 1), K = randF32(nElems, 2), V = randF32(nElems, 3);

function runT2Sync(plan, a) {
  plan.rStep(a, true, false);
  plan.lStep(a, false);
  plan.rStep(a, false, true);
  plan.lStep(a, true);
}

test('info()', () => {
  const i = b.info();
  assert.equal(typeof i.compiledWithCuda, 'boolean');
  assert.equal(i.napiVersion, 8);
  assert.ok(i.cpuThreads >= 1);
  assert.equal(typeof i.cudaMessage, 'string');
  if (!i.compiledWithCuda) {
    assert.equal(i.cudaStatus, null);
    assert.equal(i.cudaArchs, null);
    assert.equal(i.deviceCount, 0);
    assert.equal(i.device, null);
    assert.equal(i.cudaMessage, 'this build has no CUDA kernels');
  }
  console.log('  info:', JSON.stringify(i));
});

test('conversions round-trip and type-check', () => {
  const x = new Float32Array([0, 1, -2.5, 65504, NaN, Infinity, 1e-8]);
  const bf = b.f32ToBf16(x);
  assert.ok(bf instanceof Uint16Array);
  const back = b.bf16ToF32(bf);
  assert.equal(back[1], 1); assert.equal(back[2], -2.5); assert.ok(Number.isNaN(back[4]));
  const h = b.f16ToF32(b.f32ToF16(x));
  assert.equal(h[3], 65504); assert.equal(h[5], Infinity);
  assert.throws(() => b.f32ToBf16(new Float64Array(2)), { name: 'TypeError', message: /Float32Array/ });
  assert.throws(() => b.bf16ToF32([1, 2]), TypeError);
});

test('setCpuThreads', () => {
  const before = b.info().cpuThreads;
  b.setCpuThreads(2);
  assert.equal(b.info().cpuThreads, 2);
  b.setCpuThreads(0);
  assert.equal(b.info().cpuThreads, before);
  assert.throws(() => b.setCpuThreads(-1), RangeError);
  assert.throws(() => b.setCpuThreads('2'), TypeError);
});

test('finalStep(first) is rStep(first, last = true) then lStep(final = true), bit for bit; first=false needs aR/cR', async () => {
  const ref1 = new Float32Array(nElems), ref2 = new Float32Array(nElems);
  const o1 = new Float32Array(nElems), o2 = new Float32Array(nElems), o3 = new Float32Array(nElems);
  const plan = makePlan();
  plan.rStep(stageArgs(Q, K, V, ref1), true, true);
  plan.lStep(stageArgs(Q, K, V, ref1), true);
  plan.finalStep(stageArgs(Q, K, V, o1), true);
  assert.deepEqual(o1, ref1);
  runT2Sync(plan, stageArgs(Q, K, V, ref2));
  plan.rStep(stageArgs(Q, K, V, o2), true, false);
  plan.lStep(stageArgs(Q, K, V, o2), false);
  plan.finalStep(stageArgs(Q, K, V, o2), false);
  assert.deepEqual(o2, ref2);
  await plan.rStepAsync(stageArgs(Q, K, V, o3), true, false);
  await plan.lStepAsync(stageArgs(Q, K, V, o3), false);
  await plan.finalStepAsync(stageArgs(Q, K, V, o3), false);
  assert.deepEqual(o3, ref2);
  assert.throws(() => plan.finalStep(stageArgs(Q, K, V, o1), 1), { name: 'TypeError', message: /finalStep: first/ });
  assert.throws(() => plan.finalStep(stageArgs(Q, K, V)), TypeError);  // the final step needs o
  // aR / cR of another (Aq, Fk), or of no L-step at all: an error, never a read of unwritten workspace
  assert.throws(() => plan.finalStep(stageArgs(Q, K, V, o1, { Aq: 1 }), false),
    { message: /finalStep: first=false reads aR\/cR, which no lStep\(final=false\) of this plan has written for Aq=1, Fk=2/ });
  const fresh = makePlan();
  assert.throws(() => fresh.finalStep(stageArgs(Q, K, V, o1), false), { message: /no lStep\(final=false\)/ });
  assert.throws(() => fresh.rStep(stageArgs(Q, K, V, o1), false, true), { message: /rStep: first=false reads aR\/cR, which no lStep/ });
  await assert.rejects(fresh.finalStepAsync(stageArgs(Q, K, V, o1), false), { message: /finalStepAsync: first=false/ });
  fresh.dispose();
  plan.dispose();
  assert.throws(() => plan.finalStep(stageArgs(Q, K, V, o1), true), /Plan was disposed \(finalStep\)/);
});

test('one tile of b2 = N keys is exact dense attention (rStep/lStep and dense vs float64)', () => {
  const B = 1, H = 2, D = 8, n = 12;
  const q = randF32(B * n * H * D, 11), k = randF32(B * n * H * D, 12), v = randF32(B * n * H * D, 13);
  const o = new Float32Array(q.length), od = new Float32Array(q.length);
  const plan = new b.Plan({ backend: 'cpu', dtype: 0, B, H, D, b1: 1, b2: n, maxAq: 1, maxFk: 1,
    iterative: false, threads: 0 });
  const a = { q: act(q, n, H, D), k: act(k, n, H, D), v: act(v, n, H, D), o: act(o, n, H, D), Aq: 1, Fk: 1,
    qTile0: 0, causalTiles: 0, scale: 1 / Math.sqrt(D), maxInvTemp: 1e4 };
  plan.rStep(a, true, true);
  plan.lStep(a, true);
  plan.dense({ q: a.q, k: a.k, v: a.v, o: act(od, n, H, D), B, H, D, Nq: n, Nk: n, q0: 0, causalChunk: 0,
    scale: 1 / Math.sqrt(D), dtype: 0 });
  const ref = denseRef(q, k, v, B, n, n, H, D, 1 / Math.sqrt(D));
  assert.ok(maxAbsDiff(o, ref) < 1e-5, `monarch vs ref ${maxAbsDiff(o, ref)}`);
  assert.ok(maxAbsDiff(od, ref) < 1e-5, `dense vs ref ${maxAbsDiff(od, ref)}`);
  plan.dispose();
});

test('CPU plan T=2 sync: finite output; async twins give identical bytes', async () => {
  const plan = makePlan();
  const o1 = new Float32Array(nElems), o2 = new Float32Array(nElems);
  runT2Sync(plan, stageArgs(Q, K, V, o1));
  assert.ok(allFinite(o1));
  const a = stageArgs(Q, K, V, o2);
  await plan.rStepAsync(a, true, false);
  await plan.lStepAsync(a, false);
  await plan.rStepAsync(a, false, true);
  await plan.lStepAsync(a, true);
  assert.deepEqual(o2, o1);
  plan.dispose();
});

test('un-awaited async calls run in call order (serial queue), sync call while busy throws', async () => {
  const plan = makePlan();
  const ref = new Float32Array(nElems), o = new Float32Array(nElems);
  runT2Sync(plan, stageArgs(Q, K, V, ref));
  const a = stageArgs(Q, K, V, o);
  const ps = [plan.rStepAsync(a, true, false), plan.lStepAsync(a, false), plan.rStepAsync(a, false, true),
    plan.lStepAsync(a, true)];
  assert.throws(() => plan.rStep(a, true, true), /async calls in flight/);
  assert.throws(() => plan.synchronize(), /async calls in flight/);
  await plan.synchronizeAsync();
  await Promise.all(ps);
  assert.deepEqual(o, ref);
  plan.synchronize();
  plan.dispose();
});

test('fenceAsync (CPU): resolves after the async calls before it, in call order; dispose rejects a waiting fence', async () => {
  const plan = makePlan();
  const ref = new Float32Array(nElems), o = new Float32Array(nElems);
  runT2Sync(plan, stageArgs(Q, K, V, ref));
  const a = stageArgs(Q, K, V, o);
  const order = [];
  const ps = [plan.rStepAsync(a, true, false), plan.lStepAsync(a, false)].map((p, i) => p.then(() => order.push(i)));
  const f1 = plan.fenceAsync().then(() => order.push('f1'));
  const more = [plan.rStepAsync(a, false, true), plan.lStepAsync(a, true)].map((p, i) => p.then(() => order.push(i + 2)));
  const f2 = plan.fenceAsync().then(() => order.push('f2'));
  await Promise.all([...ps, f1, ...more, f2]);
  assert.deepEqual(order, [0, 1, 'f1', 2, 3, 'f2']);
  assert.deepEqual(o, ref);
  const running = plan.rStepAsync(a, true, false);
  const waiting = assert.rejects(plan.fenceAsync(), /Plan was disposed/);
  plan.dispose();
  await running;
  await waiting;
  await assert.rejects(plan.fenceAsync(), /Plan was disposed \(fenceAsync\)/);
});

test('async inputs survive GC while the worker runs', async () => {
  const plan = makePlan();
  const ref = new Float32Array(nElems);
  runT2Sync(plan, stageArgs(Q, K, V, ref));
  const outs = [];
  const ps = [];
  for (let r = 0; r < 4; r++) {
    const o = new Float32Array(nElems);
    outs.push(o);
    const a = stageArgs(Float32Array.from(Q), Float32Array.from(K), Float32Array.from(V), o);
    ps.push(plan.rStepAsync(a, true, false), plan.lStepAsync(a, false), plan.rStepAsync(a, false, true),
      plan.lStepAsync(a, true));
  }
  if (global.gc) global.gc();
  await Promise.all(ps);
  for (const o of outs) assert.deepEqual(o, ref);
  plan.dispose();
});

test('BHSD strides and typed-array views at an offset give the BSHD result', () => {
  const plan = makePlan();
  const ref = new Float32Array(nElems);
  runT2Sync(plan, stageArgs(Q, K, V, ref));
  const toBhsd = (x) => {  // [B][S][H][D] -> [B][H][S][D], placed 7 elements into a larger buffer
    const big = new Float32Array(nElems + 7);
    const y = big.subarray(7);
    for (let bb = 0; bb < G.B; bb++) for (let s2 = 0; s2 < N; s2++) for (let h = 0; h < G.H; h++) for (let d = 0; d < G.D; d++) {
      y[((bb * G.H + h) * N + s2) * G.D + d] = x[((bb * N + s2) * G.H + h) * G.D + d];
    }
    return y;
  };
  const st = [G.H * N * G.D, G.D, N * G.D];
  const o = new Float32Array(nElems + 7).subarray(7);
  const a = { ...stageArgs(Q, K, V), q: { data: toBhsd(Q), strides: st }, k: { data: toBhsd(K), strides: st },
    v: { data: toBhsd(V), strides: st }, o: { data: o, strides: st } };
  runT2Sync(plan, a);
  assert.deepEqual(o, toBhsd(ref));
  plan.dispose();
});

test('bf16 plan with Uint16Array data runs and stays close to fp32', () => {
  const plan = makePlan({ dtype: 2 });
  const q = b.f32ToBf16(Q), k = b.f32ToBf16(K), v = b.f32ToBf16(V);
  const o = new Uint16Array(nElems);
  runT2Sync(plan, stageArgs(q, k, v, o));
  const of = b.bf16ToF32(o);
  const ref = new Float32Array(nElems);
  const p32 = makePlan();
  runT2Sync(p32, stageArgs(b.bf16ToF32(q), b.bf16ToF32(k), b.bf16ToF32(v), ref));
  assert.ok(allFinite(of));
  assert.ok(maxAbsDiff(of, ref) < 0.05, `bf16 vs f32 ${maxAbsDiff(of, ref)}`);
  // A Float32Array given to a bf16 plan is a TypeError naming the tensor.
  assert.throws(() => plan.rStep(stageArgs(Q, k, v), true, true),
    { name: 'TypeError', message: /rStep: q\.data must be a Uint16Array for bfloat16/ });
  plan.dispose(); p32.dispose();
});

test('masks: keyValid / queryValid accepted, wrong length is a RangeError naming the mask', () => {
  const plan = makePlan();
  const o = new Float32Array(nElems);
  const kv = new Uint8Array(G.B * N).fill(1);
  kv[3] = 0; kv[N + 7] = 0;
  const a = stageArgs(Q, K, V, o, { keyValid: kv, queryValid: kv });
  runT2Sync(plan, a);
  assert.ok(allFinite(o));
  assert.throws(() => plan.rStep(stageArgs(Q, K, V, o, { keyValid: new Uint8Array(5) }), true, true),
    { name: 'RangeError', message: /rStep: keyValid has 5 elements, expected B·Fk·b1·b2 = 80/ });
  assert.throws(() => plan.lStep(stageArgs(Q, K, V, o, { queryValid: new Int8Array(80) }), true),
    { name: 'TypeError', message: /lStep: queryValid must be a Uint8Array/ });
  plan.dispose();
});

test('gather: map picks tokens, -1 writes zeros; out-of-range map entry is a RangeError', () => {
  const plan = makePlan();
  const B = 1, H = 2, D = 3, S = 4;
  const src = Float32Array.from({ length: B * S * H * D }, (_, i) => i + 1);
  const map = new Int32Array([3, -1, 0]);
  const dst = new Float32Array(B * 3 * H * D).fill(NaN);
  plan.gather({ src: act(src, S, H, D), dst: act(dst, 3, H, D), B, H, D, map, dtype: 0 });
  assert.deepEqual(Array.from(dst.subarray(0, 6)), Array.from(src.subarray(18, 24)));
  assert.deepEqual(Array.from(dst.subarray(6, 12)), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(dst.subarray(12, 18)), Array.from(src.subarray(0, 6)));
  assert.throws(() => plan.gather({ src: act(src, S, H, D), dst: act(dst, 3, H, D), B, H, D,
    map: new Int32Array([4, 0, 0]), dtype: 0 }), { name: 'RangeError', message: /gather: src: strided extent 30 elements exceeds its buffer of 24/ });
  plan.dispose();
});

test('gatherAsync: same result off the event loop; bad arguments reject', async () => {
  const plan = makePlan();
  const B = 1, H = 2, D = 3, S = 4;
  const src = Float32Array.from({ length: B * S * H * D }, (_, i) => i + 1);
  const dst = new Float32Array(B * 3 * H * D).fill(NaN);
  const p = plan.gatherAsync({ src: act(src, S, H, D), dst: act(dst, 3, H, D), B, H, D, map: new Int32Array([3, -1, 0]), dtype: 0 });
  assert.ok(p instanceof Promise);
  await p;
  assert.deepEqual(Array.from(dst.subarray(0, 6)), Array.from(src.subarray(18, 24)));
  assert.deepEqual(Array.from(dst.subarray(6, 12)), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(dst.subarray(12, 18)), Array.from(src.subarray(0, 6)));
  await assert.rejects(plan.gatherAsync({ src: act(src, S, H, D), dst: act(dst, 3, H, D), B, H, D,
    map: new Int32Array([4, 0, 0]), dtype: 0 }), { name: 'RangeError', message: /gatherAsync: src: strided extent 30/ });
  plan.dispose();
});

test('dense with lse/entropy and a key mask', async () => {
  const plan = makePlan();
  const B = 1, H = 2, D = 4, Nq = 3, Nk = 5;
  const q = randF32(B * Nq * H * D, 5), k = randF32(B * Nk * H * D, 6), v = randF32(B * Nk * H * D, 7);
  const o = new Float32Array(q.length), lse = new Float32Array(B * H * Nq), ent = new Float32Array(B * H * Nq);
  await plan.denseAsync({ q: act(q, Nq, H, D), k: act(k, Nk, H, D), v: act(v, Nk, H, D), o: act(o, Nq, H, D),
    B, H, D, Nq, Nk, q0: 0, causalChunk: 0, scale: 0.5, dtype: 0, keyValid: new Uint8Array([1, 1, 0, 1, 1]),
    lse, entropy: ent });
  assert.ok(allFinite(o) && allFinite(lse) && ent.every((e) => e >= 0));
  assert.throws(() => plan.dense({ q: act(q, Nq, H, D), k: act(k, Nk, H, D), v: act(v, Nk, H, D),
    o: act(o, Nq, H, D), B, H, D, Nq, Nk, q0: 0, causalChunk: 0, scale: 0.5, dtype: 0, lse: new Float32Array(2) }),
  { name: 'RangeError', message: /dense: lse has 2 elements, needs B·H·Nq = 6/ });
  plan.dispose();
});

test('bad inputs throw the right error class naming the argument (never crash)', async () => {
  const plan = makePlan({ iterative: false });
  const o = new Float32Array(nElems);
  const cases = [
    [() => plan.rStep(stageArgs(Q, K.subarray(0, 1000), V, o), true, true), RangeError,
      /rStep: k: strided extent 3840 elements exceeds its buffer of 1000 elements/],
    [() => plan.rStep(stageArgs(Q, K, V, o, { Aq: 3 }), true, true), RangeError, /rStep: Aq must be an integer in \[1, 2\], got 3/],
    [() => plan.rStep(stageArgs(Q, K, V, o, { Fk: 1.5 }), true, true), RangeError, /rStep: Fk/],
    [() => plan.rStep(stageArgs(Q, K, V, o, { scale: NaN }), true, true), RangeError, /rStep: scale must be finite/],
    [() => plan.rStep(stageArgs(Q, K, V, o, { scale: '1' }), true, true), TypeError, /rStep: scale must be a number/],
    [() => plan.rStep(stageArgs(Q, K, V, o, { maxInvTemp: 0 }), true, true), RangeError, /maxInvTemp must be > 0/],
    [() => plan.rStep(stageArgs(new Float64Array(nElems), K, V, o), true, true), TypeError, /rStep: q\.data must be a Float32Array for float32, got a Float64Array/],
    [() => plan.rStep({ ...stageArgs(Q, K, V, o), v: undefined }, true, true), TypeError, /rStep: v must be an object/],
    [() => plan.rStep({ ...stageArgs(Q, K, V, o), q: { data: Q, strides: [1, 2] } }, true, true), TypeError, /rStep: q\.strides/],
    [() => plan.rStep({ ...stageArgs(Q, K, V, o), q: { data: Q, strides: [1, -2, 3] } }, true, true), RangeError, /rStep: q\.strides\[1\] \(token\)/],
    [() => plan.rStep(stageArgs(Q, K, V, o), 1, true), TypeError, /rStep: first must be a boolean/],
    [() => plan.rStep(stageArgs(Q, K, V, o), false, true), Error, /iterative: false/],
    [() => plan.lStep(stageArgs(Q, K, V, undefined), true), TypeError, /lStep: o is required/],
    [() => plan.lStep(null, true), TypeError, /lStep: args must be an object/],
    [() => plan.recordEvent(), Error, /events need the CUDA backend/],
    [() => new b.Plan({ backend: 'gpu' }), RangeError, /backend must be 'cpu' or 'cuda'/],
    [() => new b.Plan({ backend: 'cpu', dtype: 3 }), RangeError, /Plan options\.dtype/],
    [() => new b.Plan({ backend: 'cpu', dtype: 0, B: 1, H: 1, D: 1, b1: 1, b2: 1, maxAq: 1, maxFk: 1 }), TypeError, /iterative must be a boolean/],
    [() => new b.Plan({ backend: 'cpu', dtype: 0, B: 1, H: 1, D: 1, b1: 65536, b2: 65536, maxAq: 1, maxFk: 1, iterative: false, threads: 0 }), RangeError, /tokens per sequence/],
    [() => b.Plan({}), TypeError, /Class constructors|without 'new'|cannot be invoked/],
    [() => b.DeviceBuffer.fromPointer(5, 4), TypeError, /ptr must be a bigint/],
  ];
  if (!b.info().compiledWithCuda) {
    cases.push([() => b.DeviceBuffer.alloc(16), Error, /CUDA backend unavailable: this build has no CUDA kernels/]);
    cases.push([() => new b.Plan({ backend: 'cuda', dtype: 0, B: 1, H: 1, D: 64, b1: 1, b2: 1, maxAq: 1, maxFk: 1,
      iterative: false, threads: 0 }), Error, /CUDA backend unavailable: this build has no CUDA kernels/]);
  }
  for (const [fn, cls, re] of cases) {
    let err;
    try { fn(); } catch (e) { err = e; }
    assert.ok(err, `expected a throw matching ${re}`);
    assert.ok(err instanceof cls, `expected ${cls.name} for ${re}, got ${err && err.name}: ${err && err.message}`);
    assert.match(err.message, re);
  }
  // Async variants reject (not throw) on bad arguments.
  await assert.rejects(plan.rStepAsync(stageArgs(Q, K.subarray(0, 10), V, o), true, true), RangeError);
  await assert.rejects(plan.denseAsync(null), TypeError);
  plan.dispose();
});

test('dispose: methods throw "Plan was disposed", pending async calls reject, dispose is idempotent', async () => {
  const plan = makePlan();
  const o = new Float32Array(nElems);
  const a = stageArgs(Q, K, V, o);
  const running = plan.rStepAsync(a, true, false);
  const waiting = assert.rejects(plan.lStepAsync(a, false), /Plan was disposed/);
  plan.dispose();
  plan.dispose();
  await running;  // the running worker completes; memory is freed after it
  await waiting;
  assert.throws(() => plan.rStep(a, true, true), /Plan was disposed/);
  assert.throws(() => plan.synchronize(), /Plan was disposed/);
  await assert.rejects(plan.lStepAsync(a, true), /Plan was disposed/);
});

test('a getter that disposes the plan or detaches an array mid-read throws instead of crashing', () => {
  const plan = makePlan();
  const o = new Float32Array(nElems);
  const q2 = Float32Array.from(Q);
  const a1 = stageArgs(q2, K, V, o);
  Object.defineProperty(a1, 'keyValid', { get() { structuredClone(q2.buffer, { transfer: [q2.buffer] }); return undefined; } });
  assert.throws(() => plan.rStep(a1, true, true), /rStep: a typed array argument was detached/);
  const a2 = stageArgs(Q, K, V, o);
  Object.defineProperty(a2, 'queryValid', { get() { plan.dispose(); return undefined; } });
  assert.throws(() => plan.lStep(a2, true), /Plan was disposed/);
});

test('many plans created and dropped (finalizers free workspaces)', () => {
  for (let i = 0; i < 200; i++) makePlan();
  if (global.gc) global.gc();
});

if (process.env.MONARCH_SMOKE_CUDA === '1') {
  test('CUDA: DeviceBuffer upload/download/fill/dispose', async () => {
    const buf = b.DeviceBuffer.alloc(4 * 10);
    assert.equal(buf.owned, true);
    assert.equal(typeof buf.pointer, 'bigint');
    const x = randF32(10, 9);
    buf.upload(x);
    assert.deepEqual(buf.downloadSync('f32'), x);
    assert.deepEqual(await buf.download('f32'), x);
    buf.fill(NaN, 0);
    assert.ok(buf.downloadSync('f32').every(Number.isNaN));
    buf.fill(1.5, 2);
    assert.deepEqual(Array.from(buf.downloadSync('u16')), new Array(20).fill(b.f32ToBf16(new Float32Array([1.5]))[0]));
    assert.throws(() => buf.upload(new Float32Array(3)), { name: 'RangeError', message: /12 bytes.*40 bytes/ });
    const view = b.DeviceBuffer.fromPointer(buf.pointer, 40);
    assert.equal(view.owned, false);
    view.dispose();
    assert.deepEqual(buf.downloadSync('u16').length, 20);  // still alive
    buf.dispose();
    assert.equal(buf.disposed, true);
    assert.throws(() => buf.downloadSync('f32'), /DeviceBuffer was disposed/);
  });

  test('CUDA: bf16 plan matches the CPU bf16 plan; masks, dense, gather, events, OOM', async () => {
    const g = { B: 1, H: 2, D: 64, b1: 4, b2: 8, A: 2 };
    const n = g.A * g.b1 * g.b2, ne = g.B * n * g.H * g.D;
    const q = b.f32ToBf16(randF32(ne, 21)), k = b.f32ToBf16(randF32(ne, 22)), v = b.f32ToBf16(randF32(ne, 23));
    const opts = { dtype: 2, B: g.B, H: g.H, D: g.D, b1: g.b1, b2: g.b2, maxAq: g.A, maxFk: g.A, iterative: true, threads: 0 };
    const mk = (data) => ({ data, strides: bshd(n, g.H, g.D) });
    const kv = new Uint8Array(g.B * n).fill(1);
    kv[5] = 0;
    const args = (qq, kk, vv, oo, mask) => ({ q: mk(qq), k: mk(kk), v: mk(vv), o: mk(oo), Aq: g.A, Fk: g.A, qTile0: 0,
      causalTiles: 0, scale: 1 / 8, maxInvTemp: 1e4, keyValid: mask });
    const cpu = new b.Plan({ backend: 'cpu', ...opts });
    const oc = new Uint16Array(ne), oc2 = new Uint16Array(ne);
    runT2Sync(cpu, args(q, k, v, oc, kv));
    runT2Sync(cpu, args(q, k, v, oc2, undefined));
    const gpu = new b.Plan({ backend: 'cuda', ...opts });
    const up = (x) => { const d = b.DeviceBuffer.alloc(x.byteLength); d.upload(x); return d; };
    const dq = up(q), dk = up(k), dv = up(v), dout = b.DeviceBuffer.alloc(ne * 2), dout2 = b.DeviceBuffer.alloc(ne * 2);
    assert.throws(() => gpu.rStep(args(q, k, v, oc), true, true),
      { name: 'TypeError', message: /q must be a DeviceBuffer for a CUDA plan/ });
    assert.throws(() => cpu.rStep(args(dq, dk, dv, dout), true, true),
      { name: 'TypeError', message: /q must be a host typed array for a CPU plan/ });
    assert.throws(() => gpu.rStep(args(dq, dk, b.DeviceBuffer.alloc(100), dout), true, true),
      { name: 'RangeError', message: /rStep: v: strided extent 8192 elements exceeds its DeviceBuffer of 50 elements/ });
    const e0 = gpu.recordEvent();
    const a = args(dq, dk, dv, dout, kv);
    await gpu.rStepAsync(a, true, false);
    await gpu.lStepAsync(a, false);
    gpu.rStep(a, false, true);
    gpu.lStep(a, true);
    const e1 = gpu.recordEvent();
    runT2Sync(gpu, args(dq, dk, dv, dout2, undefined));  // mask slot changes between calls
    await gpu.synchronizeAsync();
    const ms = gpu.eventElapsedMs(e0, e1);
    assert.ok(ms >= 0);
    gpu.releaseEvents();
    assert.throws(() => gpu.eventElapsedMs(0, 1), RangeError);
    const og = b.bf16ToF32(await dout.download('u16')), og2 = b.bf16ToF32(dout2.downloadSync('u16'));
    const d1 = maxAbsDiff(og, b.bf16ToF32(oc)), d2 = maxAbsDiff(og2, b.bf16ToF32(oc2));
    console.log(`  cuda vs cpu (bf16): masked ${d1}, unmasked ${d2}; events ${ms.toFixed(3)} ms`);
    assert.ok(d1 < 0.05 && d2 < 0.05, `cuda vs cpu ${d1} ${d2}`);
    assert.ok(maxAbsDiff(og, og2) > 0, 'the key mask changed the output');

    // dense with lse on the device
    const lse = b.DeviceBuffer.alloc(g.B * g.H * n * 4), od = b.DeviceBuffer.alloc(ne * 2);
    gpu.dense({ q: mk(dq), k: mk(dk), v: mk(dv), o: mk(od), B: g.B, H: g.H, D: g.D, Nq: n, Nk: n, q0: 0,
      causalChunk: 0, scale: 1 / 8, dtype: 2, keyValid: kv, lse });
    const ocd = new Uint16Array(ne), lsec = new Float32Array(g.B * g.H * n);
    cpu.dense({ q: mk(q), k: mk(k), v: mk(v), o: mk(ocd), B: g.B, H: g.H, D: g.D, Nq: n, Nk: n, q0: 0,
      causalChunk: 0, scale: 1 / 8, dtype: 2, keyValid: kv, lse: lsec });
    gpu.synchronize();
    assert.ok(maxAbsDiff(b.bf16ToF32(od.downloadSync('u16')), b.bf16ToF32(ocd)) < 0.05);
    assert.ok(maxAbsDiff(lse.downloadSync('f32'), lsec) < 1e-2);

    // gather on the device: reverse the tokens
    const map = Int32Array.from({ length: n }, (_, i) => n - 1 - i);
    map[0] = -1;
    const gd = b.DeviceBuffer.alloc(ne * 2), gc = new Uint16Array(ne);
    gpu.gather({ src: mk(dq), dst: mk(gd), B: g.B, H: g.H, D: g.D, map, dtype: 2 });
    cpu.gather({ src: mk(q), dst: mk(gc), B: g.B, H: g.H, D: g.D, map, dtype: 2 });
    gpu.synchronize();
    assert.deepEqual(gd.downloadSync('u16'), gc);

    // fenceAsync: resolves for the work before it while much later work is still queued (400 dense calls
    // of 32768 tokens, about half a second on an H200, enqueued in a few ms; 40 calls were not enough
    // there: the fence's resolution reached the test after them); its events are reused
    runT2Sync(gpu, args(dq, dk, dv, dout, kv));
    const fence = gpu.fenceAsync();
    const N = 32768, bigBytes = N * g.H * g.D * 2, mkN = (data) => ({ data, strides: bshd(N, g.H, g.D) });
    const [bq, bk, bv, bo] = [0, 1, 2, 3].map(() => b.DeviceBuffer.alloc(bigBytes));
    for (const x of [bq, bk, bv]) x.fill(0.01, 2);
    const late = new b.CudaEvent();
    const t0 = performance.now();
    for (let i = 0; i < 400; i++) gpu.dense({ q: mkN(bq), k: mkN(bk), v: mkN(bv), o: mkN(bo), B: 1, H: g.H, D: g.D, Nq: N, Nk: N, q0: 0,
      causalChunk: 0, scale: 1 / 8, dtype: 2 });
    gpu.recordEventHandle(late.handle);
    const enqueueMs = performance.now() - t0;  // the 400 enqueues must not wait for the GPU
    await fence;
    const resolvedMs = performance.now() - t0;
    const lateDone = late.query();
    for (let i = 0; i < 20; i++) await gpu.fenceAsync();  // one event, recorded again each time
    await Promise.all([gpu.fenceAsync(), gpu.fenceAsync(), gpu.fenceAsync()]);
    assert.equal(late.query(), true);
    console.log(`  fenceAsync resolved with the later work ${lateDone ? 'already done (unexpected)' : 'still queued'} (400 dense enqueues took ${enqueueMs.toFixed(2)} ms; the fence resolved ${resolvedMs.toFixed(2)} ms after the first)`);
    assert.equal(lateDone, false, 'the fence waited for work enqueued after it');
    for (const x of [bq, bk, bv, bo]) x.dispose();
    late.dispose();

    for (const x of [dq, dk, dv, dout, dout2, lse, od, gd]) x.dispose();
    gpu.dispose(); cpu.dispose();
    assert.throws(() => gpu.rStep(a, true, true), /Plan was disposed/);
    assert.throws(() => new b.Plan({ backend: 'cuda', ...opts, B: 1 << 20, maxAq: 64, maxFk: 64 }), /out of GPU memory/);
    assert.throws(() => b.DeviceBuffer.alloc(2 ** 50), /out of GPU memory/);
  });
}

(async () => {
  for (const [name, fn] of queue) {
    try {
      await fn();
      passed++;
      console.log(`ok   ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}\n     ${e && e.stack}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
})();
