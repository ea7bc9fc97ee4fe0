// Runs the monarch-attn CLI in this process (commander with exitOverride), capturing stdout / stderr;
// never leaves process.exitCode set.
import { program } from '../../cli/main';

export interface CliResult { out: string; err: string; code: number; error?: Error }

export async function cli(args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const so = jest.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => { out += String(c); return true; });
  const se = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => { err += String(c); return true; });
  let error: Error | undefined;
  try {
    await program().exitOverride().parseAsync(['node', 'monarch-attn', ...args]);
  } catch (e) {
    error = e as Error;
  } finally {
    so.mockRestore();
    se.mockRestore();
  }
  const code = error ? 1 : Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out, err, code, error };
}
