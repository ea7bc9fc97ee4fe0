// Dense fp16/bf16 tensor-core peak (TFLOP/s, no structured sparsity) by device name, from NVIDIA's
// datasheets. Used only for the "% of peak" column; unknown devices and float32 get null.
import type { DType } from '../lib/types';

const PEAKS: Array<{ match: RegExp; tflops: number; label: string }> = [
  { match: /H200/i, tflops: 989, label: 'H200 (SXM/NVL datasheet, 989 dense fp16/bf16)' },
  { match: /H100.*PCIe/i, tflops: 756, label: 'H100 PCIe (756 dense fp16/bf16)' },
  { match: /H100.*NVL/i, tflops: 835, label: 'H100 NVL (835 dense fp16/bf16)' },
  { match: /H100/i, tflops: 989, label: 'H100 SXM (989 dense fp16/bf16)' },
];

export interface Peak { tflops: number | null; label: string }

export function peakFor(deviceName: string | null, dtype: DType): Peak {
  if (!deviceName) return { tflops: null, label: 'CPU: no peak table' };
  if (dtype === 'float32') return { tflops: null, label: 'float32: no tensor-core peak used' };
  const hit = PEAKS.find((p) => p.match.test(deviceName));
  return hit ? { tflops: hit.tflops, label: hit.label } : { tflops: null, label: `unknown device "${deviceName}"` };
}
