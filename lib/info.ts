// info(): what the addon was built with and what it sees (GPU, driver, CPU threads); package version.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from './native';
import type { DType, InfoResult, SupportEntry } from './types';

function packageJsonPath(): string {
  const up1 = path.resolve(__dirname, '..');
  return path.join(path.basename(up1) === 'dist' ? path.resolve(up1, '..') : up1, 'package.json');
}

/** The package version (package.json). */
export const version: string = (JSON.parse(fs.readFileSync(packageJsonPath(), 'utf8')) as { version: string }).version;

/** Build and device facts: compiledWithCuda, cudaArchs, cudaStatus/cudaMessage, deviceCount, device, cpuThreads, support. */
export function info(): InfoResult {
  const i = native().info();
  return {
    version,
    napiVersion: i.napiVersion,
    compiledWithCuda: i.compiledWithCuda,
    cudaArchs: i.cudaArchs,
    cudaStatus: i.cudaStatus,
    cudaMessage: i.cudaMessage,
    deviceCount: i.deviceCount,
    device: i.device && {
      name: i.device.name,
      computeCapability: `${i.device.major}.${i.device.minor}`,
      smCount: i.device.smCount,
      memoryBytes: i.device.memoryBytes,
      driverVersion: i.device.driverVersion,
      runtimeVersion: i.device.runtimeVersion,
    },
    devices: (i.devices ?? []).map((d) => ({
      index: d.index, name: d.name ?? '', computeCapability: d.major === undefined ? '' : `${d.major}.${d.minor}`,
      smCount: d.smCount ?? 0, memoryBytes: d.memoryBytes ?? 0, pciBusId: d.pciBusId ?? -1,
    })),
    cpuThreads: i.cpuThreads,
    support: supportTable().map(copyEntry),
  };
}

function copyEntry(e: SupportEntry): SupportEntry {
  const h = e.headDims;
  return { ...e, headDims: Array.isArray(h) ? [...h] : { ...(h as { min: number; max: number }) } };
}

let table: readonly SupportEntry[] | undefined;

/**
 * The support table of the addon (include/monarch/support.h, through info().support): the one source of
 * every (backend, dtype, head dim) check here and in lib/options.ts. Read once; frozen.
 */
export function supportTable(): readonly SupportEntry[] {
  if (table === undefined) table = Object.freeze(native().info().support.map((e) => Object.freeze(copyEntry(e))));
  return table;
}

/** The entry of (backend, dtype), or undefined when the backend does not take the dtype. */
export function supportFor(backend: 'cpu' | 'cuda', dtype: string): SupportEntry | undefined {
  return supportTable().find((e) => e.backend === backend && e.dtype === dtype);
}

/** Whether an entry's head dims contain headDim. */
export function takesHeadDim(e: SupportEntry, headDim: number): boolean {
  const h = e.headDims;
  return Array.isArray(h) ? h.includes(headDim) : headDim >= (h as { min: number }).min && headDim <= (h as { max: number }).max;
}

/** A list as "a, b", a range as "min..max" (the wording of the error messages). */
export function headDimsText(e: SupportEntry): string {
  const h = e.headDims;
  return Array.isArray(h) ? h.join(', ') : `${(h as { min: number }).min}..${(h as { max: number }).max}`;
}

/** The largest head dim any dtype takes on the CPU (the range check of MonarchOptions.headDim). */
export function cpuMaxHeadDim(): number {
  let max = 0;
  for (const e of supportTable()) {
    if (e.backend !== 'cpu') continue;
    const h = e.headDims;
    max = Math.max(max, Array.isArray(h) ? Math.max(...h) : (h as { max: number }).max);
  }
  return max;
}

/** Null when the CPU backend takes (dtype, headDim), else why not (for a RangeError). */
export function cpuShapeProblem(dtype: DType, headDim: number): string | null {
  const e = supportFor('cpu', dtype);
  if (e === undefined) return `dtype ${dtype} is not supported by the CPU backend`;
  return takesHeadDim(e, headDim) ? null : `headDim ${headDim} is out of range ${headDimsText(e)} (CPU backend)`;
}

/**
 * Null when the CUDA kernels take (dtype, headDim), else why not (for a RangeError) naming the supported
 * set of the dtype and, where they differ, of float32 (the CUDA-core path that takes more head dims).
 */
export function cudaShapeProblem(dtype: string, headDim: number): string | null {
  const e = supportFor('cuda', dtype);
  if (e === undefined) return `dtype ${dtype} is not supported by the CUDA backend`;
  if (takesHeadDim(e, headDim)) return null;
  const f32 = supportFor('cuda', 'float32');
  const also = f32 !== undefined && f32 !== e ? `; float32: ${headDimsText(f32)}` : '';
  return `headDim ${headDim} is not supported by the CUDA backend for ${dtype} (supported: ${headDimsText(e)}${also})`;
}

/** Null when CUDA can be used, else the reason. */
export function cudaUnavailableReason(): string | null {
  const i = native().info();
  if (!i.compiledWithCuda) return 'the addon was built without CUDA';
  if (i.deviceCount < 1) return i.cudaMessage || 'no CUDA device is visible';
  return null;
}
