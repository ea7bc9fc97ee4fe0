// Packing helpers for the package tests: the file list `npm pack` would ship, a staged copy of the package
// (fresh dist/ and a prebuild from the addon this checkout loads), packing it, and an empty consumer
// project that installs the tarball offline with no compiler on PATH.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

/**
 * npm and git are on PATH (always in CI and on a developer machine; a GPU machine with only a packed
 * node may lack them, and the package tests skip there, saying why).
 */
export const PACK_TOOLS: boolean = ['npm', 'git'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
export const describePack = PACK_TOOLS ? describe : (name: string, fn: () => void) => {
  // eslint-disable-next-line no-console
  console.warn(`skipping "${name}": npm or git is not on PATH`);
  describe.skip(name, fn);
};
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Paths (relative, '/'-separated) that `npm pack` ships from `dir`, without running prepack. */
export function packList(dir: string = ROOT): string[] {
  const out = execFileSync(NPM, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' });
  return (JSON.parse(out)[0].files as Array<{ path: string }>).map((f) => f.path).sort();
}

/** Git-tracked files under the given folders (the sources a rebuild needs). */
export function trackedFiles(re: RegExp): string[] {
  return execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter((f) => f && re.test(f));
}

/** The addon file this checkout loads (build/Release before prebuilds/, as node-gyp-build does). */
export function loadedAddon(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node-gyp-build').resolve(ROOT) as string;
}

/**
 * A staged copy of the package in `tmp`/stage: the shipped files, dist/ compiled fresh, and `prebuild`
 * (if given) as prebuilds/linux-x64/monarch-attention.node.
 */
export function stagePackage(tmp: string, prebuild: string | null): string {
  const stage = path.join(tmp, 'stage');
  for (const f of packList()) {
    if (f.startsWith('dist/') || f.startsWith('prebuilds/')) continue;
    fs.cpSync(path.join(ROOT, f), path.join(stage, f));
  }
  fs.cpSync(path.join(ROOT, 'scripts', 'check-prebuild.js'), path.join(stage, 'scripts', 'check-prebuild.js'));
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'),
    '--outDir', path.join(stage, 'dist')], { cwd: ROOT });
  if (prebuild) {
    fs.mkdirSync(path.join(stage, 'prebuilds', 'linux-x64'), { recursive: true });
    fs.copyFileSync(prebuild, path.join(stage, 'prebuilds', 'linux-x64', 'monarch-attention.node'));
  }
  return stage;
}

/** `npm pack` of a staged package (scripts skipped: the stage is already built); the tarball path. */
export function pack(stage: string, dest: string): string {
  fs.mkdirSync(dest, { recursive: true });
  const out = execFileSync(NPM, ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], { cwd: stage, encoding: 'utf8' });
  return path.join(dest, JSON.parse(out)[0].filename as string);
}

/** A folder whose only programs are node, npm, npx and sh: no compiler, make or python. */
export function bareBin(tmp: string): string {
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const npmCli = path.join(path.dirname(fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim())));
  const links: Record<string, string> = {
    node: process.execPath, sh: '/bin/sh', npm: path.join(npmCli, 'npm-cli.js'), npx: path.join(npmCli, 'npx-cli.js'),
  };
  for (const [name, target] of Object.entries(links)) fs.symlinkSync(target, path.join(bin, name));
  return bin;
}

/**
 * An empty project in `tmp`/app whose node_modules already holds the package's runtime dependencies and
 * the optional ones this checkout has (copied from its node_modules), so that `npm install --offline
 * <tarball>` needs no registry.
 */
export function consumerProject(tmp: string, name = 'app'): string {
  const app = path.join(tmp, name);
  fs.mkdirSync(app, { recursive: true });
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const seen = new Set<string>();
  const add = (n: string, optional = false): void => {
    const file = path.join(ROOT, 'node_modules', n, 'package.json');
    if (seen.has(n) || (optional && !fs.existsSync(file))) return;
    seen.add(n);
    const dep = JSON.parse(fs.readFileSync(file, 'utf8'));
    Object.keys(dep.dependencies ?? {}).forEach((d) => add(d));
    Object.keys(dep.optionalDependencies ?? {}).forEach((d) => add(d, true));
  };
  Object.keys(pkg.dependencies).forEach((d) => add(d));
  Object.keys(pkg.optionalDependencies ?? {}).forEach((d) => add(d, true));
  for (const n of seen) fs.cpSync(path.join(ROOT, 'node_modules', n), path.join(app, 'node_modules', n), { recursive: true, dereference: true });
  return app;
}

/** Runs a command in `cwd` with PATH = `bin` only; never throws. */
export function runBare(bin: string, cwd: string, cmd: string, args: string[]): SpawnSyncReturns<string> {
  const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH: bin, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
