// The fuzz suite (issue 8, item 7) in CI: test/fuzz/fuzz-driver.ts runs a few thousand seeded random,
// often malformed, cases (options, tensors, layouts, dtypes, KV-cache and dispose-while-busy lifecycles)
// in a child process, so a native crash or a hang fails this test with the case that caused it instead
// of killing jest. Every case must match the float64 reference or throw a clear JS error. The counts
// (cases, accepted, rejected by reason, failures, crashes, hangs) are printed.
// Longer run: node -r ./test/child/ts-register.js test/fuzz/fuzz-driver.ts --seed 7 --cases 100000 --ms 3600000
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

test('fuzz: 4000 seeded cases, 0 failures, 0 crashes, 0 hangs, RSS flat', () => {
  const root = path.join(__dirname, '..');
  const progress = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-fuzz-')), 'progress.json');
  const seed = String(1 + Math.floor(Math.random() * 1e6));  // fresh inputs each run; printed for replay
  const r = spawnSync(process.execPath, ['-r', path.join(root, 'test', 'child', 'ts-register.js'), path.join(root, 'test', 'fuzz', 'fuzz-driver.ts'),
    '--seed', seed, '--cases', '4000', '--ms', '90000', '--progress', progress], { encoding: 'utf8', timeout: 150_000, maxBuffer: 64 * 2 ** 20 });
  const last = fs.existsSync(progress) ? fs.readFileSync(progress, 'utf8') : '(no case started)';
  if (r.error || r.signal) {
    throw new Error(`fuzz driver ${r.signal === 'SIGTERM' ? 'hung (killed after 150 s)' : `crashed (${r.signal ?? r.error})`} during ${last}\n${r.stderr.slice(-3000)}`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let counts: { cases: number; accepted: number; rejected: number; failures: number; failed: string[]; rssStartMB: number; rssEndMB: number; reasons: Record<string, number> };
  try {
    counts = JSON.parse(line);
  } catch {
    throw new Error(`fuzz driver exited with ${r.status} during ${last}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-3000)}`);
  }
  // eslint-disable-next-line no-console
  console.log(`fuzz seed ${seed}: ${counts.cases} cases, ${counts.accepted} accepted (checked against the float64 reference), ` +
    `${counts.rejected} rejected with clear errors, ${counts.failures} failures, 0 crashes, 0 hangs; RSS ${counts.rssStartMB} → ${counts.rssEndMB} MB\n` +
    `rejected by reason:\n${Object.entries(counts.reasons).map(([k, n]) => `  ${n}\t${k}`).join('\n')}`);
  expect(counts.failed).toEqual([]);
  expect(counts.failures).toBe(0);
  expect(r.status).toBe(0);
  expect(counts.cases).toBeGreaterThanOrEqual(1000);
  expect(counts.accepted).toBeGreaterThan(counts.cases / 4);
  expect(counts.rssEndMB - counts.rssStartMB).toBeLessThan(200);
}, 180_000);
