// The packed tarball installs offline into an empty project with no compiler on PATH (the prebuild loads;
// without a prebuild the same install fails, so the install script really ran), and the installed package
// works through require, import, a strict TypeScript consumer and the CLI; internals cannot be deep-imported;
// `monarch-attn build --cpu` rebuilds from the installed sources.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describePack, bareBin, consumerProject, loadedAddon, pack, ROOT, runBare, stagePackage, tmpDir } from './helpers/pack';

describePack('the packed tarball installed offline', () => {
  let tmp: string;
  let bin: string;
  let app: string;
  afterAll(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

  const node = (args: string[]) => runBare(bin, app, path.join(bin, 'node'), args);
  const out = (r: ReturnType<typeof runBare>) => `${r.stdout}\n${r.stderr}`;

  beforeAll(() => {
    tmp = tmpDir('monarch-install-');
    bin = bareBin(tmp);
    for (const tool of ['g++', 'c++', 'cc', 'make', 'python3', 'cmake']) {
      expect(runBare(bin, tmp, path.join(bin, 'sh'), ['-c', `command -v ${tool}`]).status).not.toBe(0);
    }
    const tarball = pack(stagePackage(tmp, loadedAddon()), path.join(tmp, 'tarballs'));
    app = consumerProject(tmp);
    const r = runBare(bin, app, path.join(bin, 'npm'), ['install', '--offline', '--foreground-scripts', tarball]);
    if (r.status !== 0) throw new Error(`npm install failed:\n${out(r)}`);
    expect(r.stdout).toMatch(/node-gyp-build/);   // the install script ran (and found the prebuild)
  }, 180_000);

  test('require: loads the prebuild; backend auto runs (the CPU backend where no GPU is usable, also for a CUDA build)', () => {
    const r = node(['-e', `
    const m = require('monarch-attention');
    const a = new m.MonarchAttention({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 1, headDim: 4, backend: 'auto' });
    const x = m.tensor(new Float32Array(32).fill(0.5), [1, 8, 1, 4]);
    const o = a.forwardSync(x, x, x);
    const i = m.info();
    console.log(JSON.stringify({ v: m.version, shape: o.shape, o0: o.data[0], file: require.resolve('monarch-attention'),
      backend: a.backend, gpus: i.deviceCount }));`]);
    expect(out(r)).not.toMatch(/Error/);
    const j = JSON.parse(r.stdout);
    expect(j.backend).toBe(j.gpus > 0 ? 'cuda' : 'cpu');
    expect(j.v).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(j.shape).toEqual([1, 8, 1, 4]);
    expect(j.o0).toBeCloseTo(0.5, 6);
    expect(j.file).toBe(path.join(fs.realpathSync(app), 'node_modules', 'monarch-attention', 'dist', 'lib', 'index.js'));
    // The addon came from prebuilds/ (nothing was compiled).
    expect(fs.existsSync(path.join(app, 'node_modules', 'monarch-attention', 'build'))).toBe(false);
  });

  test('import: the ESM entry has every CommonJS export and shares its module instance', () => {
    const r = node(['--input-type=module', '-e', `
    import * as esm from 'monarch-attention';
    import def from 'monarch-attention';
    import { createRequire } from 'node:module';
    const cjs = createRequire(process.cwd() + '/x.js')('monarch-attention');
    const names = Object.keys(esm).filter((k) => k !== 'default').sort();
    console.log(JSON.stringify({ names, cjs: Object.keys(cjs).filter((k) => k !== '__esModule').sort(),
      same: esm.MonarchAttention === cjs.MonarchAttention && def === cjs }));`]);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout);
    expect(j.names).toEqual(j.cjs);
    expect(j.same).toBe(true);
  });

  test('internals cannot be deep-imported; package.json can', () => {
    const r = node(['-e', `
    for (const p of ['monarch-attention/dist/lib/native', 'monarch-attention/dist/lib/index.js', 'monarch-attention/lib/tensor']) {
      try { require(p); console.log('loaded ' + p); } catch (e) { console.log(e.code); }
    }
    console.log(require('monarch-attention/package.json').name);`]);
    expect(r.stdout.trim().split('\n')).toEqual(['ERR_PACKAGE_PATH_NOT_EXPORTED', 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'monarch-attention']);
  });

  test('a strict TypeScript consumer (CommonJS and ESM, nodenext resolution) type-checks', () => {
    fs.writeFileSync(path.join(app, 'consumer.ts'), `
import { MonarchAttention, tensor, type HostTensor } from 'monarch-attention';
const a = new MonarchAttention({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 1, headDim: 4 });
const t: HostTensor<'float32'> = tensor(new Float32Array(32), [1, 8, 1, 4]);
const f: Float32Array = t.data;
export const p: Promise<HostTensor> = a.forward(t, t, t);
export { f };
`);
    fs.writeFileSync(path.join(app, 'consumer.mts'), `
import { info, denseAttention, type InfoResult } from 'monarch-attention';
const i: InfoResult = info();
export const n: number = i.deviceCount;
export const d: typeof denseAttention = denseAttention;
`);
    const tsc = require.resolve('typescript/bin/tsc');
    const r = runBare(bin, app, path.join(bin, 'node'), [tsc, '--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types'), 'consumer.ts', 'consumer.mts']);
    expect(out(r).trim()).toBe('');
    expect(r.status).toBe(0);
  });

  test('the CLI runs from the installed package (info; a small CPU bench with a PNG plot when the renderer is installed)', () => {
    const cli = path.join(app, 'node_modules', '.bin', 'monarch-attn');
    const r = runBare(bin, app, cli, ['info']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/monarch-attention 0\.|version/i);
    const png = fs.existsSync(path.join(app, 'node_modules', '@resvg', 'resvg-js'));
    const plot = png ? 'p.png' : 'p.svg';
    const b = runBare(bin, app, cli, ['bench', '--backend', 'cpu', '--frames', '2', '--height', '4', '--width', '4', '--heads', '1',
      '--head-dim', '8', '-T', '1', '--json', 'r.json', '--plot', plot, '--plot-frames', '1,2', '--no-progress']);
    expect(out(b)).not.toMatch(/Error/);
    expect(b.status).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(app, 'r.json'), 'utf8')).tool).toBe('monarch-attn bench');
    const head = fs.readFileSync(path.join(app, plot)).subarray(0, 4);
    expect(head.toString('latin1')).toBe(png ? '\x89PNG' : '<svg');
  });

  test('without a prebuild the same offline, compiler-less install fails (it would have to compile)', () => {
    const tarball = pack(stagePackage(path.join(tmp, 'noprebuild'), null), path.join(tmp, 'noprebuild', 'tarballs'));
    const other = consumerProject(tmp, 'app2');
    const r = runBare(bin, other, path.join(bin, 'npm'), ['install', '--offline', tarball]);
    expect(r.status).not.toBe(0);
    expect(out(r)).toMatch(/node-gyp|gyp ERR|python|make/i);
  }, 180_000);

  test('monarch-attn build --cpu rebuilds the installed package from its shipped sources', () => {
    const pkgDir = path.join(app, 'node_modules', 'monarch-attention');
    // The repo's cmake-js (resolved from the working directory) and the machine's toolchain.
    const log = execFileSync(process.execPath, [path.join(pkgDir, 'scripts', 'build-cuda.js'), '--cpu'], { cwd: ROOT, encoding: 'utf8' });
    expect(log).toMatch(/built .*build\/Release\/monarch\.node: CPU only/);
    const r = node(['-e', `console.log(require('node-gyp-build').path(require('path').dirname(require.resolve('monarch-attention/package.json'))))`]);
    expect(r.stdout.trim()).toBe(path.join(fs.realpathSync(pkgDir), 'build', 'Release', 'monarch.node'));
    const clean = execFileSync(process.execPath, [path.join(pkgDir, 'scripts', 'build-cuda.js'), '--clean'], { cwd: ROOT, encoding: 'utf8' });
    expect(clean).toMatch(/the shipped prebuild loads again/);
    expect(fs.existsSync(path.join(pkgDir, 'build'))).toBe(false);
  }, 300_000);
});
