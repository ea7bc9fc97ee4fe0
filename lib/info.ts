// info(): what the addon was built with and what it sees (GPU, driver, CPU threads); package version.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from './native';
import type { InfoResult } from './types';

function packageJsonPath(): string {
  const up1 = path.resolve(__dirname, '..');
  return path.join(path.basename(up1) === 'dist' ? path.resolve(up1, '..') : up1, 'package.json');
}

/** The package version (package.json). */
export const version: string = (JSON.parse(fs.readFileSync(packageJsonPath(), 'utf8')) as { version: string }).version;

/** Build and device facts: compiledWithCuda, cudaArchs, cudaStatus/cudaMessage, deviceCount, device, cpuThreads. */
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
    cpuThreads: i.cpuThreads,
  };
}

/** What the CUDA backend supports (one place; kept in sync with cuda/ dispatch). */
export const CUDA_HEAD_DIMS: readonly number[] = [64, 128];
export const CUDA_DTYPES: readonly string[] = ['float16', 'bfloat16'];

/** Null when CUDA can be used, else the reason. */
export function cudaUnavailableReason(): string | null {
  const i = native().info();
  if (!i.compiledWithCuda) return 'the addon was built without CUDA';
  if (i.deviceCount < 1) return i.cudaMessage || 'no CUDA device is visible';
  return null;
}
