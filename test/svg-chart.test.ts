// The chart writer gives every series its own look (colour, then dash and marker), so a legend of many
// configurations (the accuracy-vs-cost chart has 11) can be read.
import { lineChartSvg } from '../benchmarks/svg';

describe('lineChartSvg', () => {
  test('20 series: 20 distinct legend styles; the second round dashed with square markers', () => {
    const series = Array.from({ length: 20 }, (_, i) => ({ label: `s${i}`, points: [[i, 1], [i + 1, 2]] as Array<[number, number]> }));
    const svg = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series });
    const legend = [...svg.matchAll(/<line x1="[\d.]+" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke="(#[0-9a-f]{6})" stroke-width="3"( stroke-dasharray="[^"]+")?\/>/g)]
      .map((m) => `${m[1]}${m[2] ?? ''}`);
    expect(legend).toHaveLength(20);
    expect(new Set(legend).size).toBe(20);
    expect(legend.slice(10).every((l) => l.includes('dasharray'))).toBe(true);
    expect((svg.match(/<rect x="[\d.]+" y="[\d.]+" width="7" height="7"/g) ?? []).length).toBe(20);  // 10 series × 2 points
  });
});
