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

/**
 * What the CUDA backend supports (one place; kept in sync with cuda/): float16 / bfloat16 run on
 * tensor cores with these head dims (cuda/common/mma_utils.cuh); float32 runs on CUDA cores with any head dim
 * up to CUDA_F32_MAX_HEAD_DIM (cuda/common/fp32_rows.cuh).
 */
export const CUDA_HEAD_DIMS: readonly number[] = [64, 128];
export const CUDA_F32_MAX_HEAD_DIM = 128;

/** Null when the CUDA kernels take (dtype, headDim), else why not (for a RangeError). */
export function cudaShapeProblem(dtype: string, headDim: number): string | null {
  if (dtype === 'float32') {
    return headDim <= CUDA_F32_MAX_HEAD_DIM ? null
      : `headDim ${headDim} is not supported by the CUDA backend for float32 (supported: 1..${CUDA_F32_MAX_HEAD_DIM})`;
  }
  return CUDA_HEAD_DIMS.includes(headDim) ? null
    : `headDim ${headDim} is not supported by the CUDA backend for ${dtype} (supported: ${CUDA_HEAD_DIMS.join(', ')}; float32: 1..${CUDA_F32_MAX_HEAD_DIM})`;
}

/** Null when CUDA can be used, else the reason. */
export function cudaUnavailableReason(): string | null {
  const i = native().info();
  if (!i.compiledWithCuda) return 'the addon was built without CUDA';
  if (i.deviceCount < 1) return i.cudaMessage || 'no CUDA device is visible';
  return null;
}
