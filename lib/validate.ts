// Shared option checks (the TS validation tier of STYLE.md §5): TypeError for a wrong kind, RangeError
// for a bad value; every message names the option and the value received.

/** How a received value is shown in messages: strings quoted, numbers as written, objects by kind. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as { length?: number }).length ?? '?'}`;
  if (typeof value === 'object') return `an object (${(value as object).constructor?.name ?? 'Object'})`;
  return String(value);
}

/** An integer in [min, max]. */
export function checkInt(name: string, value: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, received ${show(value)}`);
  }
  if (value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new RangeError(`${name} ${value} is out of range ${range}`);
  }
  return value;
}

/** An optional integer in [min, max] with a default. */
export function optInt(name: string, value: unknown, dflt: number, min: number, max?: number): number {
  return value === undefined ? dflt : checkInt(name, value, min, max);
}

/** A finite number > 0. */
export function checkPositive(name: string, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, received ${show(value)}`);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} ${value} must be a finite number > 0`);
  return value;
}

/** Largest finite float32 and smallest positive normal float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;
export const FLOAT32_MIN_NORMAL = 1.1754943508222875e-38;

/**
 * A softmax scale: a finite number > 0 that survives the conversion to float32 the kernels use (it
 * neither overflows to Infinity nor underflows to a subnormal or zero, which would turn every logit
 * into NaN or 0 and silently give uniform attention).
 */
export function checkScale(name: string, value: unknown): number {
  const s = checkPositive(name, value);
  const f = Math.fround(s);
  if (!Number.isFinite(f)) throw new RangeError(`${name} ${s} overflows float32 (max ${FLOAT32_MAX})`);
  if (f < FLOAT32_MIN_NORMAL) throw new RangeError(`${name} ${s} underflows float32 (min normal ${FLOAT32_MIN_NORMAL})`);
  return s;
}

/** A finite number in [min, max]. */
export function checkRange(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, received ${show(value)}`);
  if (!Number.isFinite(value) || value < min || value > max) throw new RangeError(`${name} ${value} is out of range ${min}..${max}`);
  return value;
}

/** One of a set of strings (optional with a default). */
export function checkEnum<T extends string>(name: string, value: unknown, allowed: readonly T[], dflt?: T): T {
  if (value === undefined && dflt !== undefined) return dflt;
  if (typeof value !== 'string') {
    throw new TypeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, received ${show(value)}`);
  }
  if (!(allowed as readonly string[]).includes(value)) {
    throw new RangeError(`${name} ${show(value)} is not one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  }
  return value as T;
}

/** A plain object (for option bags). */
export function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} must be an object, received ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Optional boolean with a default. */
export function optBool(name: string, value: unknown, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, received ${show(value)}`);
  return value;
}

/** `divisor` divides `value` (both already validated integers). */
export function checkDivides(name: string, value: number, divisorName: string, divisor: number): void {
  if (value % divisor !== 0) throw new RangeError(`${name} ${value} is not divisible by ${divisorName} ${divisor}`);
}

/** A Uint8Array of an exact length (masks). */
export function checkMask(name: string, value: unknown, length: number, what: string): Uint8Array {
  if (!(isTyped(value, 'Uint8Array'))) throw new TypeError(`${name} must be a Uint8Array, received ${show(value)}`);
  if (value.length !== length) {
    throw new RangeError(`${name}.length ${value.length} must equal ${what} = ${length}`);
  }
  return value;
}

/** Options of time() / denseTime(). */
export interface TimeOptions {
  /** Untimed forwards first (default 5, ≥ 0). */
  warmup?: number;
  /** Timed forwards (default 50, ≥ 1). */
  iters?: number;
}

export const TIME_OPTION_KEYS = ['warmup', 'iters'] as const;

/** Parses time() / denseTime() options (read once, unknown keys rejected). */
export function timeOptions(opts: unknown): { warmup: number; iters: number } {
  const o = snapshot('options', opts, TIME_OPTION_KEYS, true);
  return { warmup: optInt('warmup', o.warmup, 5, 0, 1_000_000), iters: optInt('iters', o.iters, 50, 1, 1_000_000) };
}


type TypedName = 'Float32Array' | 'Uint16Array' | 'Uint8Array' | 'Int32Array';
type TypedOf<N extends TypedName> = N extends 'Float32Array' ? Float32Array : N extends 'Uint16Array' ? Uint16Array
  : N extends 'Uint8Array' ? Uint8Array : Int32Array;

/**
 * Realm-independent typed-array check (`instanceof` fails for arrays made in another V8 context, e.g.
 * by the addon when the caller runs inside jest's vm sandbox).
 */
export function isTyped<N extends TypedName>(x: unknown, name: N): x is TypedOf<N> {
  return ArrayBuffer.isView(x) && (x as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag] === name;
}

/** True for an Error from any realm. */
export function isErrorLike(e: unknown): e is Error {
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

/** Levenshtein distance (for "did you mean" suggestions). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length];
}

/** The known key closest to `key` (case-insensitive edit distance ≤ max(2, ⌊len/3⌋)), or undefined. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(key, k);
    if (dist < bestD) { best = k; bestD = dist; }
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/**
 * Reads an options object once: every known key is read exactly once (so getters and Proxies cannot
 * hand later code a value other than the validated one) into a new plain object; an own enumerable key
 * that is not known (a typo) is a TypeError naming it and the closest known key. `undefined` options
 * give an empty snapshot when `optional`.
 */
export function snapshot(name: string, value: unknown, known: readonly string[], optional = false): Record<string, unknown> {
  if (value === undefined && optional) return {};
  const o = checkObject(name, value);
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    const near = closestKey(key, known);
    throw new TypeError(`${name}.${key} is not a known option${near ? `; did you mean '${near}'?` : ''} (known: ${known.join(', ')})`);
  }
  const out: Record<string, unknown> = {};
  // Inherited only from a class or a prototype the caller built: a key that Object.prototype itself
  // carries (prototype pollution) and the object does not own is not an option.
  for (const key of known) out[key] = fromObjectPrototype(o, key) ? undefined : o[key];
  return out;
}

function fromObjectPrototype(o: object, key: string): boolean {
  return !Object.prototype.hasOwnProperty.call(o, key) && Object.prototype.hasOwnProperty.call(Object.prototype, key);
}

/** Bytes as "1.61 TB (1610612736000 bytes)". */
export function showBytes(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let x = bytes, u = 0;
  while (x >= 1000 && u < units.length - 1) { x /= 1000; u++; }
  return u === 0 ? `${bytes} bytes` : `${x.toPrecision(3)} ${units[u]} (${bytes} bytes)`;
}
