#!/usr/bin/env node
// Lints .github/workflows/*.yml (run by .ci/run): YAML that parses, the GitHub Actions shape (on, jobs,
// runs-on, steps with exactly one of run/uses, actions pinned to a version, known keys), `${{ }}`
// expressions closed, and what the workflows call exists here: `bash <file>` scripts and `npm run <script>`.
// The GPU job must target the documented self-hosted labels. Exit 1 with one line per problem.
//   node scripts/lint-workflows.js [dir]     (default .github/workflows)
'use strict';
const fs = require('node:fs');
const path = require('node:path');

let yaml;
try {
  yaml = require('js-yaml');  // in node_modules through jest; not a dependency of the package
} catch {
  process.stderr.write('lint-workflows: js-yaml is not installed (npm ci installs it with the dev dependencies)\n');
  process.exit(1);
}

const root = path.resolve(__dirname, '..');
const dir = path.resolve(process.argv[2] || path.join(root, '.github', 'workflows'));
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const GPU_LABELS = ['self-hosted', 'linux', 'x64', 'gpu'];
const JOB_KEYS = new Set(['name', 'runs-on', 'needs', 'if', 'env', 'steps', 'strategy', 'timeout-minutes', 'container',
  'services', 'permissions', 'concurrency', 'outputs', 'defaults', 'continue-on-error', 'environment', 'uses', 'with', 'secrets']);
const STEP_KEYS = new Set(['name', 'id', 'if', 'uses', 'run', 'with', 'env', 'shell', 'working-directory',
  'continue-on-error', 'timeout-minutes']);
const TOP_KEYS = new Set(['name', 'run-name', 'on', 'permissions', 'env', 'defaults', 'concurrency', 'jobs']);

const problems = [];
function lintFile(file) {
  const rel = path.relative(root, file);
  const say = (where, msg) => problems.push(`${rel}: ${where}: ${msg}`);
  const text = fs.readFileSync(file, 'utf8');
  if (/\t/.test(text)) say('file', 'contains a tab (YAML indentation must be spaces)');
  let doc;
  try {
    doc = yaml.load(text, { filename: rel });
  } catch (e) {
    say('yaml', e.message.split('\n')[0]);
    return;
  }
  if (!doc || typeof doc !== 'object') return say('file', 'is not a mapping');
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) say('top level', `unknown key "${k}"`);
  if (!doc.on) say('top level', 'no "on" trigger');
  if (!doc.jobs || typeof doc.jobs !== 'object') return say('top level', 'no jobs');
  for (const m of text.matchAll(/\$\{\{([^}]*)(\}\}|$)/gm)) if (m[2] !== '}}') say('expression', `unclosed \${{${m[1]}`);
  for (const [id, job] of Object.entries(doc.jobs)) {
    const at = `jobs.${id}`;
    for (const k of Object.keys(job)) if (!JOB_KEYS.has(k)) say(at, `unknown key "${k}"`);
    if (!job['runs-on'] && !job.uses) say(at, 'no runs-on');
    const labels = [].concat(job['runs-on'] || []);
    if (labels.includes('self-hosted') && GPU_LABELS.some((l) => !labels.includes(l))) {
      say(at, `self-hosted runs-on [${labels}] must be [${GPU_LABELS.join(', ')}] (the labels gpu.yml documents)`);
    }
    if (!Array.isArray(job.steps) || job.steps.length === 0) { if (!job.uses) say(at, 'no steps'); continue; }
    job.steps.forEach((step, i) => {
      const where = `${at}.steps[${i}]${step && step.name ? ` (${step.name})` : ''}`;
      if (!step || typeof step !== 'object') return say(where, 'is not a mapping');
      for (const k of Object.keys(step)) if (!STEP_KEYS.has(k)) say(where, `unknown key "${k}"`);
      if (('run' in step) === ('uses' in step)) return say(where, 'needs exactly one of run / uses');
      if (step.uses && !/^[\w.-]+\/[\w./-]+@[\w.-]+$|^docker:\/\/|^\.\//.test(step.uses)) say(where, `uses "${step.uses}" is not owner/repo@version`);
      if (step.run) {
        for (const m of String(step.run).matchAll(/\bbash\s+((?:\.?[\w-]+\/)*[\w.-]+)/g)) {
          if (!fs.existsSync(path.join(root, m[1]))) say(where, `runs ${m[1]}, which does not exist`);
        }
        for (const m of String(step.run).matchAll(/\bnpm run ([\w:.-]+)/g)) {
          if (!pkg.scripts[m[1]]) say(where, `npm run ${m[1]}: no such script in package.json`);
        }
      }
    });
  }
}

const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f)) : [];
if (files.length === 0) problems.push(`${path.relative(root, dir) || dir}: no workflow files`);
files.forEach(lintFile);
if (problems.length) {
  process.stderr.write(problems.map((p) => `lint-workflows: ${p}`).join('\n') + '\n');
  process.exit(1);
}
console.log(`lint-workflows: ${files.length} workflow files clean (${files.map((f) => path.basename(f)).join(', ')})`);
