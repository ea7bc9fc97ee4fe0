// Symbol.dispose / Symbol.asyncDispose where the realm lacks them. Node 20 defines them on its main
// realm as the registered symbols below, but a fresh vm context (jest's test environment, for one) has a
// Symbol without them, and a class body `[Symbol.dispose]()` would then define a method named
// "undefined". Defining the same registered symbols keeps `using` / `await using` and explicit calls
// working in every realm. Imported for its side effect before any class that disposes is defined.
for (const [name, key] of [['dispose', 'nodejs.dispose'], ['asyncDispose', 'nodejs.asyncDispose']] as const) {
  if (typeof (Symbol as unknown as Record<string, unknown>)[name] !== 'symbol') {
    Object.defineProperty(Symbol, name, { value: Symbol.for(key), writable: false, enumerable: false, configurable: false });
  }
}
export {};
