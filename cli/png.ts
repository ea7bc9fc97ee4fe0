// SVG → PNG for `bench --plot x.png`, through the optional dependency @resvg/resvg-js (a Rust renderer
// with prebuilt binaries; system fonts draw the text). Loaded before the bench runs, so that a missing
// renderer fails at once with what to install, not after minutes of timing.
export type PngRenderer = (svg: string) => Buffer;

interface ResvgModule {
  Resvg: new (svg: string, opts: object) => { render(): { asPng(): Buffer } };
}

export function loadPngRenderer(file: string, load: (id: string) => unknown = require): PngRenderer {
  let mod: ResvgModule;
  try {
    mod = load('@resvg/resvg-js') as ResvgModule;
  } catch (e) {
    throw new Error(`--plot ${file}: writing a PNG needs the optional dependency @resvg/resvg-js, which is not installed ` +
      `(${(e as Error).message.split('\n')[0]}); install it with \`npm install @resvg/resvg-js\`, or write an .svg`);
  }
  return (svg) => new mod.Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    background: '#ffffff',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  }).render().asPng();
}
