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
