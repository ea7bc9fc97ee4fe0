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

/** Parses time() / denseTime() options. */
export function timeOptions(opts: unknown): { warmup: number; iters: number } {
  const o = opts === undefined ? {} : checkObject('options', opts);
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
