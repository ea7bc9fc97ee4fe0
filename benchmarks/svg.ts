// A small SVG line-chart writer (no plotting dependency): linear x, linear or log10 y, one polyline
// and markers per series, a legend, and "nice" 1-2-5 ticks.

export interface Series { label: string; points: Array<[number, number]> }
export interface ChartSpec { title: string; subtitle?: string; xLabel: string; yLabel: string; series: Series[]; logY?: boolean }

// Ten distinct colours (the first six as before, so existing charts keep theirs); past ten a series
// repeats a colour with a dashed line and square markers, so no two series of up to 20 look alike.
const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const PW = 510, H = 520, M = { l: 80, t: 64, b: 60 };  // PW: plot width; the legend sizes the right margin

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

function linearTicks(lo: number, hi: number, count = 6): number[] {
  const step = niceStep(hi - lo || 1, count);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function label(v: number): string {
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(0) : String(+v.toPrecision(4));
}

export function lineChartSvg(c: ChartSpec): string {
  const pts = c.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!c.logY || y > 0));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  const ty = (y: number) => (c.logY ? Math.log10(y) : y);
  let y0 = c.logY ? Math.floor(Math.log10(Math.min(...ys, 1))) : 0;
  let y1 = c.logY ? Math.ceil(Math.log10(Math.max(...ys, 1))) : Math.max(...ys, 1e-9) * 1.05;
  if (y1 <= y0) { y0 -= 1; y1 += 1; }
  const longest = Math.max(0, ...c.series.map((s) => s.label.length));
  const W = M.l + PW + Math.max(230, 70 + Math.ceil(7.2 * longest));  // ~7 px per 12-px character
  const pw = PW, ph = H - M.t - M.b;
  const sx = (x: number) => +(M.l + ((x - x0) / (x1 - x0)) * pw).toFixed(1);
  const sy = (y: number) => +(M.t + ph - ((ty(y) - y0) / (y1 - y0)) * ph).toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.l}" y="24" font-size="16" font-weight="bold">${esc(c.title)}</text>`,
  ];
  if (c.subtitle) out.push(`<text x="${M.l}" y="44" fill="#555">${esc(c.subtitle)}</text>`);
  for (const x of linearTicks(x0, x1, 8)) {
    out.push(`<line x1="${sx(x)}" y1="${M.t}" x2="${sx(x)}" y2="${M.t + ph}" stroke="#eee"/>`,
      `<text x="${sx(x)}" y="${M.t + ph + 16}" text-anchor="middle">${label(x)}</text>`);
  }
  const yTicks = c.logY ? Array.from({ length: y1 - y0 + 1 }, (_, i) => 10 ** (y0 + i)) : linearTicks(y0, y1, 6);
  for (const y of yTicks) {
    out.push(`<line x1="${M.l}" y1="${sy(y)}" x2="${M.l + pw}" y2="${sy(y)}" stroke="#eee"/>`,
      `<text x="${M.l - 6}" y="${sy(y) + 4}" text-anchor="end">${label(y)}</text>`);
  }
  out.push(`<rect x="${M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    `<text x="${M.l + pw / 2}" y="${H - 18}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text transform="translate(20 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const alt = Math.floor(i / COLORS.length) % 2 === 1;  // second round of colours: dashed, squares
    const dash = alt ? ' stroke-dasharray="7 4"' : '';
    const ok = s.points.filter(([, y]) => Number.isFinite(y) && (!c.logY || y > 0));
    if (ok.length) {
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${ok.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' ')}"/>`);
      for (const [x, y] of ok) {
        out.push(alt ? `<rect x="${+(sx(x) - 3.5).toFixed(1)}" y="${+(sy(y) - 3.5).toFixed(1)}" width="7" height="7" fill="${color}"/>`
          : `<circle cx="${sx(x)}" cy="${sy(y)}" r="3" fill="${color}"/>`);
      }
    }
    const ly = M.t + 10 + i * 22;
    out.push(`<line x1="${M.l + pw + 16}" y1="${ly}" x2="${M.l + pw + 40}" y2="${ly}" stroke="${color}" stroke-width="3"${dash}/>`,
      `<text x="${M.l + pw + 46}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
