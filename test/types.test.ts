// Compiles test/types/api.types.ts with strict tsc: the API's types accept the valid calls and reject
// (via `@ts-expect-error`, which fails when unused) a Uint16Array without dtype, a data kind not matching
// the dtype, mixed host/device inputs to forward / denseAttention / KVCache.step; HostTensor.data narrows.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

test('type tests compile under tsc --strict, every @ts-expect-error used', () => {
  const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '--noEmit', '--strict', '--target', 'es2022',
    '--module', 'commonjs', '--skipLibCheck', '--types', 'node', 'test/types/api.types.ts'],
  { cwd: ROOT, encoding: 'utf8' });
  expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
  expect(r.status).toBe(0);
}, 60_000);

test('the type test really fails when a rejected call compiles (the check can fail)', () => {
  // Drop one @ts-expect-error target: the directive becomes unused and tsc must report it.
  const fs = require('node:fs') as typeof import('node:fs');
  const os = require('node:os') as typeof import('node:os');
  const src = fs.readFileSync(path.join(ROOT, 'test/types/api.types.ts'), 'utf8')
    .replace("from '../../lib'", `from ${JSON.stringify(path.join(ROOT, 'lib'))}`)
    .replace('tensor(u16, [2]);', "tensor(u16, [2], 'float16');");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-types-'));
  const file = path.join(dir, 'broken.types.ts');
  fs.writeFileSync(file, src);
  const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '--noEmit', '--strict', '--target', 'es2022',
    '--module', 'commonjs', '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules/@types'), file],
  { cwd: ROOT, encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  expect(r.stdout).toMatch(/TS2578: Unused '@ts-expect-error' directive/);
  expect(r.stdout.match(/error TS/g)).toHaveLength(1);
}, 60_000);
