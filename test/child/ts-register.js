// Lets child processes and worker threads of the tests load the TypeScript sources (lib/*.ts) directly:
// a require hook that transpiles .ts files with the TypeScript compiler (CommonJS, no type checking).
'use strict';
const fs = require('node:fs');
const ts = require('typescript');

if (!require.extensions['.ts']) {
  require.extensions['.ts'] = (module, filename) => {
    const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: filename,
    });
    module._compile(out.outputText, filename);
  };
}
