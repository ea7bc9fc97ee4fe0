// Lifetime of host inputs during async work (issue 8 item 1): child processes transfer, detach and
// shrink inputs while forward() / denseAttention() / KVCache.step() / attend() / write() run, and check SharedArrayBuffer and
// addon-memory inputs. A native crash ends the child with a signal, which fails the test with its output.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

function runChild(script: string, args: string[]): string {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'lifetime', script), ...args], { encoding: 'utf8', timeout: 180_000 });
  const out = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${r.status ?? r.signal}:\n${out.slice(-4000)}`);
  return r.stdout.trim().split('\n').pop() ?? '';
}

describe('host inputs taken away during async calls', () => {
  const seed = String(1 + Math.floor(Math.random() * 1e6));  // fresh timing each run; printed on failure
  test.each([['15', seed], ['15', String(Number(seed) + 1)]])('forward / denseAttention / step / attend / write: %s iterations, seed %s', (iters, s) => {
    expect(runChild('detach-during-call.js', [iters, s])).toMatch(/^ok \d+ correct, \d+ rejected$/);
  });

  test('SharedArrayBuffer and addon-memory inputs run in place; the native plan rejects detached arrays', () => {
    expect(runChild('shared-and-addon.js', [])).toMatch(/^ok shared\+addon/);
  });
});
