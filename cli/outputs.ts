// The files a bench writes, settled before it runs: --json (the bench report), --markdown, --plot (an
// .svg, or a .png rendered from the same SVG) and the plot's sweep timings in `<plot name>.sweep.json`,
// a separate file next to the image. Two outputs that resolve to the same path are an error, so the
// sweep can never overwrite the report.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface BenchOutputs {
  json?: string;
  markdown?: string;
  plot?: { image: string; format: 'svg' | 'png'; data: string };
}

export function planOutputs(o: { json?: string; markdown?: string; plot?: string }): BenchOutputs {
  const out: BenchOutputs = { json: o.json, markdown: o.markdown };
  if (o.plot !== undefined) {
    const ext = path.extname(o.plot).toLowerCase();
    if (ext !== '.svg' && ext !== '.png') {
      throw new RangeError(`--plot ${o.plot}: the plot is written as .svg or .png, received "${ext || 'no extension'}"`);
    }
    const data = o.plot.slice(0, o.plot.length - ext.length) + '.sweep.json';
    out.plot = { image: o.plot, format: ext === '.png' ? 'png' : 'svg', data };
  }
  const named: Array<[string, string | undefined]> = [
    ['--json', out.json], ['--markdown', out.markdown], ['--plot', out.plot?.image], ['the --plot sweep data', out.plot?.data],
  ];
  const seen = new Map<string, string>();
  for (const [what, file] of named) {
    if (file === undefined) continue;
    const key = path.resolve(file);
    const other = seen.get(key);
    if (other) throw new RangeError(`${other} and ${what} are the same file ${file}; give them different names`);
    seen.set(key, `${what} ${file}`);
    checkWritable(what, file);
  }
  return out;
}

/** Fails now, not after the run, when an output file's folder is missing or not writable. */
export function checkWritable(what: string, file: string): void {
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new Error(`${what} ${file}: the folder ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new Error(`${what} ${file}: ${dir} is not a folder`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new Error(`${what} ${file}: the folder ${dir} is not writable`);
  }
}
