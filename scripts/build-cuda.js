#!/usr/bin/env node
// Rebuilds the addon of an installed monarch-attention for this machine (build/Release/monarch.node,
// which node-gyp-build loads before the shipped prebuild). Shipped in the package; run as
//   npx monarch-attn build --cuda-arch 89          (the CLI calls this file)
//   node node_modules/monarch-attention/scripts/build-cuda.js --cuda-arch 89
//   --cuda-arch LIST   CMake CUDA architectures, comma-separated: 89, 90a, 80-real, ... or native (the
//                      GPUs of this machine; the default)
//   --cpu              CPU-only build (no CUDA compiler needed)
//   --clean            remove build/ (go back to the shipped prebuild) and exit
// Needs cmake >= 3.18, a C++17 compiler and, for CUDA, nvcc (PATH or CUDACXX). cmake-js comes from
// node_modules when installed (npm install --save-dev cmake-js), else from `npx --yes cmake-js@8`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const usage = 'usage: monarch-attn build [--cuda-arch LIST | --cpu] [--clean]';

function die(msg) {
  process.stderr.write(`monarch-attn build: ${msg}\n`);
  process.exit(1);
}

function parse(argv) {
  const o = { arch: 'native', cpu: false, clean: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cpu') o.cpu = true;
    else if (a === '--clean') o.clean = true;
    else if (a === '--cuda-arch' || a.startsWith('--cuda-arch=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!v) die(`--cuda-arch needs a value, e.g. 89 or 80,90a\n${usage}`);
      if (!/^(native|all|all-major|[0-9]{2,3}[af]?(-real|-virtual)?([,;][0-9]{2,3}[af]?(-real|-virtual)?)*)$/.test(v)) {
        die(`--cuda-arch ${JSON.stringify(v)} is not a CUDA architecture list (e.g. 89, 90a, 80-real,120)`);
      }
      o.arch = v.replace(/,/g, ';');
      o.archGiven = true;
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    } else die(`unknown argument ${JSON.stringify(a)}\n${usage}`);
  }
  if (o.cpu && o.archGiven) die('--cpu and --cuda-arch exclude each other');
  return o;
}

function has(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

function cmakeJs() {
  for (const base of [root, process.cwd()]) {
    try {
      return [process.execPath, require.resolve('cmake-js/bin/cmake-js', { paths: [base] })];
    } catch { /* next */ }
  }
  process.stderr.write('monarch-attn build: cmake-js is not installed here; running it with npx (needs the npm registry)\n');
  return ['npx', '--yes', 'cmake-js@8'];
}

function main() {
  const o = parse(process.argv.slice(2));
  const build = path.join(root, 'build');
  if (o.clean) {
    fs.rmSync(build, { recursive: true, force: true });
    console.log(`removed ${build}; the shipped prebuild loads again`);
    return;
  }
  if (!fs.existsSync(path.join(root, 'CMakeLists.txt'))) die(`${root} has no CMakeLists.txt (a broken install?)`);
  if (!has('cmake')) die('cmake is not on PATH (cmake >= 3.18 is needed; e.g. apt-get install cmake)');
  const env = { ...process.env };
  if (!o.cpu && !env.CUDACXX && !has('nvcc')) {
    if (fs.existsSync('/usr/local/cuda/bin/nvcc')) env.CUDACXX = '/usr/local/cuda/bin/nvcc';
    else die('no CUDA compiler: put nvcc on PATH or set CUDACXX (or use --cpu for a CPU-only build)');
  }
  const [cmd, ...pre] = cmakeJs();
  const args = [...pre, 'rebuild', '--directory', root,
    o.cpu ? '--CDMONARCH_CUDA=OFF' : '--CDMONARCH_CUDA=ON'];
  if (!o.cpu) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${o.arch}`);
  console.log(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: 'inherit' });
  if (r.error) die(`could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) die(`the build failed (exit ${r.status}); the shipped prebuild is still used unless build/Release/monarch.node exists`);
  const addon = path.join(build, 'Release', 'monarch.node');
  const check = spawnSync(process.execPath, ['-e',
    'const i=require(process.argv[1]).info();console.log(JSON.stringify(i))', addon], { encoding: 'utf8' });
  if (check.status !== 0) die(`built ${addon} but it does not load:\n${check.stderr}`);
  const i = JSON.parse(check.stdout);
  if (!o.cpu && !i.compiledWithCuda) die(`built ${addon} without CUDA: cmake found no CUDA compiler (set CUDACXX)`);
  console.log(`built ${addon}: ${i.compiledWithCuda ? `CUDA archs ${i.cudaArchs}` : 'CPU only'}; ` +
    `${i.deviceCount} GPU(s) visible${i.deviceCount ? '' : ` (${i.cudaMessage})`}`);
}

main();
