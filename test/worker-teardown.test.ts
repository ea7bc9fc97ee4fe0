// Environment teardown with work in flight (issue 8, item 2): terminating a worker thread whose
// forward() / denseAttention() / KVCache.step() is running (or whose pool.flush() fences wait), or
// exiting the process, must neither abort (exit 134 "terminate called after throwing an instance of
// 'Napi::Error'") nor crash. The drivers run
// in child processes (test/child/*.js), so a native abort fails one test instead of killing jest.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { cudaGate } from './helpers/backend';

const child = (name: string): string => path.join(__dirname, 'child', name);

function run(script: string, args: string[], timeout: number): { status: number | null; signal: string | null; out: string; stdout: string } {
  const r = spawnSync(process.execPath, [child(script), ...args], { encoding: 'utf8', timeout });
  return { status: r.status, signal: r.signal, out: `${r.stdout}\n${r.stderr}`, stdout: r.stdout };
}

function expectClean(r: ReturnType<typeof run>): void {
  if (r.status !== 0 || r.signal !== null || /terminate called|Aborted|Segmentation/.test(r.out)) {
    throw new Error(`child exited with ${r.status ?? r.signal}:\n${r.out.slice(-4000)}`);
  }
}

const backends: Array<'cpu' | 'cuda'> = cudaGate().run ? ['cpu', 'cuda'] : ['cpu'];

describe.each(backends)('%s backend', (backend) => {
  test('worker.terminate() during forward / denseAttention / KVCache.step / enqueued calls with flushes pending never aborts the process (24 random terminations)', () => {
    // Random terminate timing (seeded): 0-40 ms after the worker has started its loops, so some
    // terminations land while a stage runs on a libuv thread, others between stages or during setup.
    const seed = String(1 + Math.floor(Math.random() * 1e6));
    const r = run('worker-terminate.js', [backend, '24', seed], 170_000);
    expectClean(r);
    const stats = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { iterations: number; rssStartMB: number; rssEndMB: number };
    expect(stats.iterations).toBe(24);
    // Each terminated worker's plans, workspaces and staging are freed at its teardown: the parent's RSS
    // must not grow by anything near 24 × the workers' working sets (~30 MB each with V8 heaps).
    expect(stats.rssEndMB - stats.rssStartMB).toBeLessThan(400);
  }, 180_000);

  test('process.exit() with async work in flight exits with the requested code', () => {
    for (const delay of ['0', '2', '15']) expectClean(run('exit-in-flight.js', [backend, delay], 60_000));
  }, 120_000);
});
