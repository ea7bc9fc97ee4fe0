// scripts/lint-workflows.js: the repository's workflows lint clean, and the linter reports broken ones
// (YAML errors, steps with both run and uses, unpinned actions, missing scripts, wrong GPU labels).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const lint = (dir?: string) => spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'lint-workflows.js'), ...(dir ? [dir] : [])],
  { cwd: ROOT, encoding: 'utf8' });

test('the workflows lint clean', () => {
  const r = lint();
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/3 workflow files clean \(ci\.yml, gpu\.yml, release\.yml\)/);
  expect(r.status).toBe(0);
});

test('broken workflows are reported, one line per problem', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-wf-'));
  fs.writeFileSync(path.join(dir, 'bad.yml'), [
    'name: bad', 'on: push', 'jobs:', '  a:', '    runs-on: [self-hosted, gpu]', '    steps:',
    '      - uses: actions/checkout', '      - run: bash scripts/nope.sh && npm run no-such-script',
    '      - run: echo hi', '        uses: actions/setup-node@v4', '      - run: echo ${{ github.sha', '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'syntax.yml'), 'on: push\njobs:\n  a: [\n');
  const r = lint(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  expect(r.status).toBe(1);
  const lines = r.stderr.trim().split('\n');
  for (const re of [/self-hosted runs-on \[self-hosted,gpu\] must be \[self-hosted, linux, x64, gpu\]/, /uses "actions\/checkout" is not owner\/repo@version/,
    /runs scripts\/nope\.sh, which does not exist/, /npm run no-such-script: no such script/, /needs exactly one of run \/ uses/,
    /unclosed \$\{\{/, /syntax\.yml: yaml: /]) {
    expect(lines.some((l) => re.test(l))).toBe(true);
  }
});
