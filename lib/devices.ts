// The `device` option (which GPU an instance, cache, DeviceTensor, CudaStream or CudaEvent uses) and the
// check that a call's DeviceTensors live on its instance's GPU. Pure functions of the values and the
// visible device count, so that the multi-GPU code path is unit-tested without a second GPU (the native
// side makes the device current around every CUDA call: csrc/binding_device_scope.h).
import { native } from './native';
import { show } from './validate';

let count: number | undefined;
/** CUDA devices visible to the process (0 without CUDA), read once: visibility does not change in a process. */
export function deviceCount(): number {
  if (count === undefined) {
    const i = native().info();
    count = i.compiledWithCuda ? i.deviceCount : 0;
  }
  return count;
}

/** What checkTensorDevices needs of a tensor (a DeviceTensor, or a test double). */
export interface OnDevice { readonly device: number }

/**
 * A `device` option: undefined → 0; otherwise an integer (TypeError) ≥ 0 (RangeError) below `count`, the
 * visible CUDA devices (RangeError naming the option and the count). The CPU backend has one device:
 * anything but 0 is a RangeError saying so.
 */
export function checkDevice(name: string, value: unknown, backend: 'cpu' | 'cuda', count: number): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${name} must be an integer device index, received ${show(value)}`);
  if (value < 0) throw new RangeError(`${name} ${value} must be ≥ 0`);
  if (backend === 'cpu') {
    if (value !== 0) throw new RangeError(`${name} ${value} needs the CUDA backend; the CPU backend runs on device 0 only`);
    return 0;
  }
  if (value >= count) {
    throw new RangeError(`${name} ${value} is out of range: ${count} CUDA device${count === 1 ? '' : 's'} visible` +
      (count > 0 ? ` (0..${count - 1})` : ''));
  }
  return value;
}

/**
 * Throws when a DeviceTensor is not on `device`, naming the tensor, its device and the owner's:
 * "k is on device 1 but the MonarchAttention is on device 0". Undefined entries are skipped.
 */
export function checkTensorDevices(owner: string, device: number, tensors: ReadonlyArray<readonly [string, OnDevice | undefined]>): void {
  for (const [name, t] of tensors) {
    if (t !== undefined && t.device !== device) {
      throw new RangeError(`${name} is on device ${t.device} but the ${owner} is on device ${device}; ` +
        'pass tensors allocated on the same device (DeviceTensor.empty / fromHost / fromPointer with { device })');
    }
  }
}
