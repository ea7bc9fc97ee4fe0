// Backend gates. CPU cases always run; CUDA cases run when MONARCH_TEST_CUDA=1 (forced: they then fail
// loudly if the GPU is unusable) or when info() reports a device; otherwise they are skipped with the
// reason printed in the test name and on the console.
import { info } from './pkg';

export interface CudaGate {
  run: boolean;
  reason: string;
}

let gate: CudaGate | undefined;

export function cudaGate(): CudaGate {
  if (gate) return gate;
  if (process.env.MONARCH_TEST_CUDA === '1') {
    gate = { run: true, reason: 'MONARCH_TEST_CUDA=1' };
    return gate;
  }
  try {
    const i = info();
    gate = i.deviceCount > 0
      ? { run: true, reason: `${i.deviceCount} device(s)` }
      : { run: false, reason: `no GPU: ${i.compiledWithCuda ? i.cudaMessage || 'deviceCount 0' : 'built without CUDA'}` };
  } catch (e) {
    gate = { run: false, reason: `no GPU: info() failed: ${(e as Error).message}` };
  }
  return gate;
}

export function cudaAvailable(): boolean {
  return cudaGate().run;
}

/** `describe` for CUDA cases: runs them when the gate is open, else one skipped test naming the reason. */
export function describeCuda(name: string, body: () => void): void {
  const g = cudaGate();
  if (g.run) {
    describe(`cuda: ${name}`, body);
  } else {
    describe(`cuda: ${name}`, () => {
      test.skip(`cuda: skipped (${g.reason})`, () => undefined);
    });
    // eslint-disable-next-line no-console
    console.log(`cuda: ${name}: skipped (${g.reason})`);
  }
}
