// The `device` option without a second GPU (CPU-simulated): the checks of the option and of a call's
// tensors (pure functions, fed with fake tensors on "devices" 0 and 1), and the code path that routes an
// instance's device to its native plan, its scratch buffers, its output pool and its buffer views (the
// native binding replaced by recording doubles for the duration of a test). On a GPU machine, the real
// single-GPU checks run too (an out-of-range index names the option and the count).
import { checkDevice, checkTensorDevices, type OnDevice } from '../lib/devices';
import { native, type NativeBinding } from '../lib/native';
import { createPlan, resolveOptions } from '../lib/options';
import { Scratch } from '../lib/inputs';
import { bufferView } from '../lib/device';
import { cudaAvailable } from './helpers/backend';
import { DeviceTensor, info, MonarchAttention, denseAttentionSync, allocTensor } from './helpers/pkg';

const seq = { layout: { kind: 'sequence' as const, length: 16, blockSize: 4 }, heads: 2, headDim: 8, backend: 'cpu' as const };

describe('device option (CPU-simulated)', () => {
  test('checkDevice: default 0, kinds, ranges, the count in the message, the CPU backend', () => {
    expect(checkDevice('device', undefined, 'cuda', 1)).toBe(0);
    expect(checkDevice('device', 1, 'cuda', 2)).toBe(1);
    expect(checkDevice('device', 0, 'cpu', 0)).toBe(0);
    expect(() => checkDevice('device', '1', 'cuda', 2)).toThrow(TypeError);
    expect(() => checkDevice('device', 1.5, 'cuda', 2)).toThrow(/^device must be an integer device index, received 1.5/);
    expect(() => checkDevice('device', -1, 'cuda', 2)).toThrow(RangeError);
    expect(() => checkDevice('device', 1, 'cuda', 1)).toThrow(RangeError);
    expect(() => checkDevice('device', 1, 'cuda', 1)).toThrow(/^device 1 is out of range: 1 CUDA device visible \(0\.\.0\)$/);
    expect(() => checkDevice('device', 8, 'cuda', 8)).toThrow(/^device 8 is out of range: 8 CUDA devices visible \(0\.\.7\)$/);
    expect(() => checkDevice('device', 1, 'cpu', 0)).toThrow(/^device 1 needs the CUDA backend/);
  });

  test('checkTensorDevices: two instances on devices 0 and 1 accept their own tensors and name both devices otherwise', () => {
    const on = (device: number): OnDevice => ({ device });
    const [q0, k0, v0, q1, k1, v1] = [on(0), on(0), on(0), on(1), on(1), on(1)];
    expect(() => checkTensorDevices('MonarchAttention', 0, [['q', q0], ['k', k0], ['v', v0], ['out', undefined]])).not.toThrow();
    expect(() => checkTensorDevices('MonarchAttention', 1, [['q', q1], ['k', k1], ['v', v1]])).not.toThrow();
    expect(() => checkTensorDevices('MonarchAttention', 0, [['q', q0], ['k', k1], ['v', v0]]))
      .toThrow(/^k is on device 1 but the MonarchAttention is on device 0/);
    expect(() => checkTensorDevices('KVCache', 1, [['q', q1], ['k', k1], ['v', v1], ['out', on(0)]]))
      .toThrow(/^out is on device 0 but the KVCache is on device 1/);
    expect(() => checkTensorDevices('KVCache', 1, [['q', q0]])).toThrow(RangeError);
  });

  test("an instance's device reaches its plan, scratch buffers, output pool and buffer views", () => {
    const b = native() as NativeBinding & Record<string, unknown>;
    const realPlan = b.Plan, realBuffer = b.DeviceBuffer;
    const plans: Array<Record<string, unknown>> = [];
    const allocs: Array<[number, number | undefined]> = [];
    const views: Array<[bigint, number, number | undefined]> = [];
    const fakeBuffer = (bytes: number, device: number, pointer = 0x1000n): Record<string, unknown> => ({
      byteLength: bytes, device, pointer, disposed: false, dispose() { this.disposed = true; },
    });
    try {
      (b as Record<string, unknown>).Plan = function FakePlan(this: unknown, o: Record<string, unknown>) { plans.push(o); } as never;
      (b as Record<string, unknown>).DeviceBuffer = {
        alloc: (bytes: number, device?: number) => { allocs.push([bytes, device]); return fakeBuffer(bytes, device ?? 0); },
        fromPointer: (ptr: bigint, bytes: number, device?: number) => { views.push([ptr, bytes, device]); return fakeBuffer(bytes, device ?? 0, ptr); },
      } as never;
      const cpu = resolveOptions(seq);
      expect(cpu.device).toBe(0);
      for (const device of [0, 1]) {
        // What resolveOptions returns for backend 'cuda', device d (the CUDA checks need a GPU).
        createPlan({ ...cpu, backend: 'cuda', device }, 1, 1);
        expect(plans.at(-1)).toMatchObject({ backend: 'cuda', device });
        const scratch = new Scratch(true, Infinity, device);
        const buf = scratch.get('stage.q', 'bfloat16', 64);
        expect(allocs.at(-1)).toEqual([128, device]);
        scratch.outputs.take(256);
        expect(allocs.at(-1)).toEqual([256, device]);
        bufferView(buf as never, 32, 64);
        expect(views.at(-1)).toEqual([0x1000n + 32n, 64, device]);
      }
      createPlan(cpu, 1, 1);
      expect(plans.at(-1)!.device).toBeUndefined();  // CPU plans get no device
    } finally {
      (b as Record<string, unknown>).Plan = realPlan;
      (b as Record<string, unknown>).DeviceBuffer = realBuffer;
    }
  });

  test('MonarchOptions.device on the CPU backend: 0 is accepted, anything else named', () => {
    const attn = new MonarchAttention({ ...seq, device: 0 });
    expect(attn.device).toBe(0);
    expect(attn.config.device).toBe(0);
    attn.dispose();
    expect(() => new MonarchAttention({ ...seq, device: 1 })).toThrow(/^device 1 needs the CUDA backend/);
    expect(() => new MonarchAttention({ ...seq, device: 'gpu0' as never })).toThrow(TypeError);
    const q = allocTensor([1, 16, 2, 8]);
    expect(() => denseAttentionSync(q, q, q, { backend: 'cpu', device: 2 })).toThrow(/^device 2 needs the CUDA backend/);
    expect(denseAttentionSync(q, q, q, { backend: 'cpu', device: 0 }).out.shape).toEqual([1, 16, 2, 8]);
  });

  test('the native plan refuses a device for a CPU plan', () => {
    const Plan = native().Plan;
    const o = { backend: 'cpu' as const, dtype: 0 as const, B: 1, H: 1, D: 8, b1: 1, b2: 1, maxAq: 1, maxFk: 1, iterative: false, threads: 0 };
    // Native errors come from the addon's realm: compare names, not constructors.
    const nameOf = (fn: () => unknown): string => { try { fn(); } catch (e) { return (e as Error).name; } return 'none'; };
    expect(nameOf(() => new Plan({ ...o, device: 1 }))).toBe('RangeError');
    expect(() => new Plan({ ...o, device: 1 })).toThrow(/Plan options\.device 1 needs the CUDA backend/);
    expect(nameOf(() => new Plan({ ...o, device: -1 }))).toBe('RangeError');
    new Plan({ ...o, device: 0 }).dispose();
  });

  test('info().devices lists every visible device by index', () => {
    const i = info();
    expect(i.devices).toHaveLength(i.deviceCount);
    i.devices.forEach((d, k) => {
      expect(d.index).toBe(k);
      expect(typeof d.name).toBe('string');
    });
    if (i.deviceCount > 0) expect(i.devices[0].name).toBe(i.device!.name);
  });

  (cudaAvailable() ? test : test.skip)('GPU: an index ≥ the device count is a RangeError naming the option and the count; tensors know their device', () => {
    const count = info().deviceCount;
    const cuda = { ...seq, backend: 'cuda' as const, dtype: 'bfloat16' as const, headDim: 64 };
    const re = new RegExp(`^device ${count} is out of range: ${count} CUDA devices? visible`);
    expect(() => new MonarchAttention({ ...cuda, device: count })).toThrow(RangeError);
    expect(() => new MonarchAttention({ ...cuda, device: count })).toThrow(re);
    expect(() => DeviceTensor.empty([4], 'bfloat16', { device: count })).toThrow(re);
    const t = DeviceTensor.empty([4], 'bfloat16', { device: count - 1 });
    expect(t.device).toBe(count - 1);
    expect(DeviceTensor.fromPointer(t.pointer, [4], 'bfloat16').device).toBe(count - 1);  // found by cudaPointerGetAttributes
    // The last device end to end: device inputs on it, host inputs, dense with the inputs' device.
    const attn = new MonarchAttention({ ...cuda, device: count - 1 });
    expect(attn.device).toBe(count - 1);
    const h = allocTensor([1, 16, 2, 64], 'bfloat16');
    (h.data as Uint16Array).fill(0x3f80);  // 1.0
    const d = DeviceTensor.fromHost(h, { device: count - 1 });
    const out = attn.forwardSync(d, d, d);
    expect(out.device).toBe(count - 1);
    expect(Array.from(out.downloadSync().data as Uint16Array)).toEqual(Array.from(attn.forwardSync(h, h, h).data as Uint16Array));
    const dense = denseAttentionSync(d, d, d);
    expect((dense.out as DeviceTensor).device).toBe(count - 1);
    expect(() => denseAttentionSync(d, d, d, { device: count })).toThrow(re);
    for (const x of [attn, out, d, dense.out as DeviceTensor, t]) x.dispose();
  });
});
