// What `npm pack` ships (without building): docs, license, entry points, every native source a rebuild
// needs, nothing from test/ or the build tree; package.json metadata; prepack's prebuild guard.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describePack, packList, ROOT, tmpDir, trackedFiles } from './helpers/pack';

describePack('npm pack contents', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  let files: string[];
  beforeAll(() => { files = packList(); }, 60_000);

  test('ships the license, changelog, docs, the README and what it links to', () => {
    for (const f of ['LICENSE', 'CHANGELOG.md', 'README.md', 'docs/API.md', 'benchmarks/README.md', 'package.json']) {
      expect(files).toContain(f);
    }
    expect(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License[\s\S]*monarch-attention contributors/);
    // Every relative link and image of the README (docs, benchmark notes, the plot) is in the package.
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(3);
    // (A link to a file not yet in the repository is the README's problem, not the package's: skipped here.)
    const present = links.map((l) => path.posix.normalize(l)).filter((l) => fs.existsSync(path.join(ROOT, l)));
    expect(present.length).toBeGreaterThan(3);
    for (const l of present) expect(files).toContain(l);
  });

  test('ships the entry points and every native source of both builds', () => {
    // benchmarks/torch_sdpa.py: the CLI's torch baseline rows run it from the package root.
    for (const f of ['esm/index.mjs', 'esm/index.d.mts', 'bin/monarch-attn.js', 'scripts/build-cuda.js', 'CMakeLists.txt', 'binding.gyp',
      'benchmarks/torch_sdpa.py']) {
      expect(files).toContain(f);
    }
    const sources = trackedFiles(/\.(cc|h|hpp|cu|cuh)$/).filter((f) => !f.startsWith('test/'));
    expect(sources.length).toBeGreaterThan(20);
    expect(sources.filter((f) => !files.includes(f))).toEqual([]);
    for (const entry of Object.values(pkg.bin as Record<string, string>)) expect(files).toContain(entry);
  });

  test('ships no tests, build tree, sources of dist/ or local junk', () => {
    const bad = files.filter((f) => /^(test|build|node_modules|lib|cli|scripts\/(?!build-cuda\.js)|\.ci|\.github)\//.test(f) || f.endsWith('.tgz'));
    expect(bad).toEqual([]);
  });

  test('package.json: metadata, exports map, engines', () => {
    expect(pkg.license).toBe('MIT');
    expect(pkg.repository.url).toMatch(/github\.com\/monarch-attention\/monarch-attention/);
    expect(pkg.homepage).toMatch(/^https:\/\//);
    expect(pkg.bugs.url).toMatch(/\/issues$/);
    expect(pkg.engines.node).toBe('>=20');
    expect(Object.keys(pkg.exports).sort()).toEqual(['.', './package.json']);
    const dot = pkg.exports['.'];
    expect(dot.import.default).toBe('./esm/index.mjs');
    expect(dot.require.default).toBe(`./${pkg.main}`);
    expect(dot.require.types).toBe(`./${pkg.types}`);
    expect(pkg.scripts.prepack).toMatch(/check-prebuild\.js --pack/);
    expect(pkg.scripts.prepack).toMatch(/build:ts/);
    // Node 20+ everywhere we say so: CI matrix starts at 20.
    const ci = fs.readFileSync(path.join(ROOT, '.github', 'workflows', 'ci.yml'), 'utf8');
    expect(ci).toMatch(/node:\s*\[\s*20\b/);
  });

  test('prepack fails loudly when prebuilds/linux-x64 is missing or is not the CUDA build', () => {
    const tmp = tmpDir('monarch-prepack-');
    fs.mkdirSync(path.join(tmp, 'scripts'));
    fs.copyFileSync(path.join(ROOT, 'scripts', 'check-prebuild.js'), path.join(tmp, 'scripts', 'check-prebuild.js'));
    const check = (env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, ['scripts/check-prebuild.js', '--pack'],
      { cwd: tmp, encoding: 'utf8', env: { ...process.env, MONARCH_PACK_ALLOW_CPU: '', ...env } });
    const missing = check();
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/expected one \.node file in prebuilds\/linux-x64, found 0: the package would install by compiling/);

    // A CPU-only addon passes only with MONARCH_PACK_ALLOW_CPU=1; a CUDA addon passes as is.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon: string = require('node-gyp-build').resolve(ROOT);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cuda: boolean = require(addon).info().compiledWithCuda;
    fs.mkdirSync(path.join(tmp, 'prebuilds', 'linux-x64'), { recursive: true });
    fs.copyFileSync(addon, path.join(tmp, 'prebuilds', 'linux-x64', 'monarch-attention.node'));
    const plain = check();
    if (cuda) {
      expect(plain.status).toBe(0);
    } else {
      expect(plain.status).toBe(1);
      expect(plain.stderr).toMatch(/was built without CUDA.*MONARCH_PACK_ALLOW_CPU=1/);
    }
    const allowed = check({ MONARCH_PACK_ALLOW_CPU: '1' });
    expect(allowed.stderr).toBe('');
    expect(allowed.status).toBe(0);
    expect(allowed.stdout).toMatch(/^prebuild ok: monarch-attention\.node .*compiledWithCuda (true|false)/);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});
