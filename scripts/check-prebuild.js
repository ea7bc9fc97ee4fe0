#!/usr/bin/env node
// Checks prebuilds/linux-x64 (scripts/prebuild.sh, and `prepack`): exactly one addon, which loads, says
// whether it was compiled with CUDA as expected and needs no CUDA shared library (static cudart: it must
// load where no driver is installed).
//   node scripts/check-prebuild.js 1|0|any   must be a CUDA build | a CPU-only build | either
//   node scripts/check-prebuild.js --pack    (prepack) a CUDA build; either with MONARCH_PACK_ALLOW_CPU=1
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const dir = path.join(__dirname, '..', 'prebuilds', 'linux-x64');
function fail(msg) {
  process.stderr.write(`check-prebuild: ${msg}\n`);
  process.exit(1);
}
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
if (files.length !== 1) {
  fail(`expected one .node file in prebuilds/linux-x64, found ${files.length}: the package would install by` +
    ' compiling (build it with `npm run prebuilds`, or MONARCH_PREBUILD_CPU=1 npm run prebuilds without nvcc)');
}
const file = path.join(dir, files[0]);
let info;
try {
  info = require(file).info();
} catch (err) {
  fail(`${files[0]} does not load: ${err && err.message}`);
}
const arg = process.argv[2] || 'any';
const want = arg === '--pack' ? (process.env.MONARCH_PACK_ALLOW_CPU === '1' ? 'any' : '1') : arg;
if (!['1', '0', 'any'].includes(want)) fail(`unknown argument ${JSON.stringify(arg)} (1, 0, any or --pack)`);
if (want === '1' && !info.compiledWithCuda) fail(`${files[0]} was built without CUDA (was nvcc found?)` +
  (arg === '--pack' ? '; MONARCH_PACK_ALLOW_CPU=1 packs a CPU-only prebuild (tests only)' : ''));
if (want === '0' && info.compiledWithCuda) fail(`${files[0]} was built with CUDA but a CPU-only prebuild was asked for`);
if (process.platform === 'linux') {
  let needed = '';
  try {
    needed = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  } catch {
    process.stderr.write('check-prebuild: readelf not found; skipping the shared-library check\n');
  }
  const cuda = needed.split('\n').filter((l) => /NEEDED/.test(l) && /libcuda|libcudart|libcublas/.test(l));
  if (cuda.length) fail(`${files[0]} links CUDA shared libraries (it must use static cudart):\n${cuda.join('\n')}`);
}
const mb = (fs.statSync(file).size / 2 ** 20).toFixed(1);
// The newest glibc symbol version it needs: the oldest distribution it installs on.
let glibc = 0;
for (const m of fs.readFileSync(file).toString('latin1').matchAll(/GLIBC_2\.(\d+)/g)) glibc = Math.max(glibc, Number(m[1]));
console.log(`prebuild ok: ${files[0]} (${mb} MiB), compiledWithCuda ${info.compiledWithCuda}` +
  (info.cudaArchs ? `, archs ${info.cudaArchs}` : '') + (glibc ? `, needs glibc >= 2.${glibc}` : '') + `; here: ${info.deviceCount} GPU(s), ${info.cudaMessage || 'no CUDA'}`);
