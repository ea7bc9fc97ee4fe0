#!/usr/bin/env node
// Launcher of the monarch-attn CLI: the TypeScript compiles to dist/cli/main.js.
'use strict';
const path = require('node:path');

const entry = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let cli;
try {
  cli = require(entry);
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
    process.stderr.write(`monarch-attn: ${path.relative(process.cwd(), entry) || entry} is not built; run npm run build ` +
      '(or npm run build:ts when the native addon is already built)\n');
    process.exit(1);
  }
  throw err;
}
cli.main(process.argv);
