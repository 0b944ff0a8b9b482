/**
 * Error-code observation for campaign coverage. A target calls {@link noteError} (or
 * {@link noteErrorCode}) when its oracle ACCEPTS a catalogued error (the engine rejected hostile
 * input the right way); the runner collects the codes per campaign unit, and
 * `deno task fuzz:coverage` lists the catalogue codes that no target reached.
 *
 * Codes: a `VirtqError` code (`"AVAIL_HEAD_OUT_OF_RANGE"`), `DMA_FAULT(<reason>)`,
 * `DMA_MAP_ERROR(<reason>)` (see `fuzz/catalogue.ts`). Cheap: one Set insert per call.
 * @module
 */

const observed = new Set<string>();

/** Records that the running target met (and accepted) the catalogued error `code`. */
export function noteErrorCode(code: string): void {
  observed.add(code);
}

/**
 * The catalogue code of an error value: `VirtqError.code`, `DMA_FAULT(reason)`,
 * `DMA_MAP_ERROR(reason)`, another error's string `code`, or `undefined` when it has none.
 */
export function errorCodeOf(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const { code, reason } = e as { code?: unknown; reason?: unknown };
  if (typeof code !== "string") return undefined;
  return typeof reason === "string" ? `${code}(${reason})` : code;
}

/** Records the catalogue code of `e` (see {@link errorCodeOf}); ignores errors without a code. */
export function noteError(e: unknown): void {
  const code = errorCodeOf(e);
  if (code !== undefined) observed.add(code);
}

/** Runner use: the codes noted since the last {@link resetObserved}, sorted. */
export function observedErrorCodes(): string[] {
  return [...observed].sort();
}

/** Runner use: forgets every noted code (at the start of each campaign unit). */
export function resetObserved(): void {
  observed.clear();
}

/**
 * Runner use: records the code of every instance of `cls` constructed from now on, without any
 * help from targets or engine. It relies on the constructor assigning `this.name` (as the
 * catalogue's error classes do): a setter on the prototype catches that assignment, asks
 * `codeOf` for the code (the fields set later are not there yet, the message is) and stores the
 * name as an ordinary own property. Idempotent per class.
 */
export function observeConstructions(
  cls: { readonly prototype: object },
  codeOf: (e: Error) => string | undefined,
): void {
  const proto = cls.prototype;
  if (Object.prototype.hasOwnProperty.call(proto, "name")) return;
  Object.defineProperty(proto, "name", {
    configurable: true,
    get(): string {
      return Object.getPrototypeOf(proto).name;
    },
    set(this: Error, value: string) {
      Object.defineProperty(this, "name", {
        value,
        writable: true,
        enumerable: true,
        configurable: true,
      });
      const code = codeOf(this);
      if (code !== undefined) observed.add(code);
    },
  });
}
