// Runs the native-surface smoke test (test/native/binding_smoke.js: info, conversions, CPU Plan stages
// sync and async, argument errors, lifecycle guards; with MONARCH_TEST_CUDA=1 also its CUDA paths) in a
// child process against build/Release/monarch.node, so a crash there fails one test instead of jest.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

test('test/native/binding_smoke.js passes on build/Release/monarch.node', () => {
  const script = path.join(__dirname, 'native', 'binding_smoke.js');
  const env = { ...process.env, MONARCH_SMOKE_CUDA: process.env.MONARCH_TEST_CUDA === '1' ? '1' : '' };
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000, env });
  const out = `${r.stdout}\n${r.stderr}`;
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0) throw new Error(`binding_smoke.js exited with ${r.status ?? r.signal}:\n${out.slice(-4000)}`);
  expect(last).toMatch(/^\d+ passed, 0 failed$/);
});
