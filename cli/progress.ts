// A cli-progress bar on stderr, or nothing when disabled or stderr is not a TTY.
import { SingleBar, Presets } from 'cli-progress';

export interface Progress {
  start(total: number, what: string): void;
  tick(what: string): void;
  /** Print a line without tearing the bar. */
  log(line: string): void;
  stop(): void;
}

export function makeProgress(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) {
    return { start() {}, tick() {}, log: (l) => process.stderr.write(`${l}\n`), stop() {} };
  }
  const bar = new SingleBar(
    { stream: process.stderr, format: ' {bar} {value}/{total} | {what}', hideCursor: true, clearOnComplete: true },
    Presets.shades_classic,
  );
  let active = false;
  return {
    start(total, what) { bar.start(total, 0, { what }); active = true; },
    tick(what) { if (active) bar.increment(1, { what }); },
    log(line) {
      if (active) { process.stderr.write('\r\x1b[K'); process.stderr.write(`${line}\n`); bar.render(); }
      else process.stderr.write(`${line}\n`);
    },
    stop() { if (active) { bar.stop(); active = false; } },
  };
}
