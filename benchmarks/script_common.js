// What the stand-alone benchmark scripts (loop_delay_probe.js, staging_stall.js) share: loading the
// package from dist/ (or, in a checkout without dist/, its TypeScript sources) and reading --name value
// arguments.
'use strict';
const path = require('node:path');
const root = path.join(__dirname, '..');

/** The package's lib modules by name (e.g. 'index', 'hoststage'), compiled or from the sources. */
function loadLib(...names) {
  try {
    return names.map((n) => require(path.join(root, 'dist', 'lib', `${n}.js`)));
  } catch {
    require(path.join(root, 'test', 'lifetime', 'register-ts.js'));  // from a checkout without dist/
    return names.map((n) => require(path.join(root, 'lib', `${n}.ts`)));
  }
}

/** `arg(name, dflt)`: the value after --name (RangeError when missing); `num(name, dflt, min)`: a number ≥ min. */
function cliArgs(argv = process.argv.slice(2)) {
  function arg(name, dflt) {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return dflt;
    if (i + 1 >= argv.length) throw new RangeError(`--${name} needs a value`);
    return argv[i + 1];
  }
  function num(name, dflt, min) {
    const raw = arg(name, undefined);
    if (raw === undefined) return dflt;
    const x = Number(raw);
    if (!Number.isFinite(x) || x < min) throw new RangeError(`--${name} must be a number ≥ ${min}, received ${JSON.stringify(raw)}`);
    return x;
  }
  return { argv, arg, num };
}

module.exports = { root, loadLib, cliArgs };
