// A cli-progress bar on stderr with elapsed time and ETA, or nothing when disabled or stderr is not a TTY.
// Steps may carry weights (e.g. the estimated seconds of each bench step) so that the ETA tracks work,
// not step counts.
import { SingleBar, Presets } from 'cli-progress';

export interface Progress {
  start(total: number, what: string): void;
  /** The step before is done; `what` starts now and is worth `units` of the total (default 1). */
  tick(what: string, units?: number): void;
  /** Print a line without tearing the bar. */
  log(line: string): void;
  stop(): void;
}

export const BAR_FORMAT = ' {bar} {percentage}% | {what} | {duration_formatted} elapsed, ETA {eta_formatted}';

export function makeProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled || !stream.isTTY) {
    return { start() {}, tick() {}, log: (l) => stream.write(`${l}\n`), stop() {} };
  }
  const bar = new SingleBar(
    { stream, format: BAR_FORMAT, hideCursor: true, clearOnComplete: true, etaBuffer: 4, fps: 5, formatValue: (v, _o, type) => (type === 'percentage' ? String(v) : String(+Number(v).toPrecision(3))) },
    Presets.shades_classic,
  );
  let active = false;
  let pending = 0;  // units of the step in progress, counted when the next one starts (or at stop)
  return {
    start(total, what) { bar.start(Math.max(total, 1e-9), 0, { what }); active = true; pending = 0; },
    tick(what, units = 1) { if (active) { bar.increment(pending, { what }); pending = units; } },
    log(line) {
      if (active) { stream.write('\r\x1b[K'); stream.write(`${line}\n`); bar.render(); }
      else stream.write(`${line}\n`);
    },
    stop() { if (active) { bar.stop(); active = false; } },
  };
}
