/**
 * A dma-direct operation for the `dma-modes` target: builds a {@link DirectDmaApi} with a DMA
 * mask and a bus limit (numbers and exact u64 bigints, some invalid on purpose) over a guest
 * memory with a private (confidential) region, maps a buffer with `map` or `mapCoherent`, and
 * checks the outcome against the rule of Linux's `dma_capable` (the last byte's bus address must
 * not exceed min(mask, bus limit); GPAs beyond 2^52 are refused): the bus address on success
 * (the GPA: no windows), `DmaMapError("mask")` past the limit, `DmaMapError("private-memory")`
 * for a coherent map of private memory, a `RangeError` for a mask outside u64, and `limit`
 * exact (a number when safe, else the bigint).
 * @module
 */

import { DirectDmaApi, DmaMapError, GuestMemory } from "../../../src/mod.ts";
import { OracleFailure } from "../../target.ts";

/** One dma-direct operation (indices into the tables below, plus offsets). */
export interface DirectOp {
  /** Index into {@link DIRECT_MASKS}. */
  mask: number;
  /** Index into {@link DIRECT_BUS_LIMITS}. */
  busLimit: number;
  /** Index into {@link DIRECT_GPAS}. */
  base: number;
  /** Byte offset added to the base GPA (may cross the limit). */
  off: number;
  /** Index into {@link DIRECT_LENGTHS}. */
  len: number;
  /** `mapCoherent` instead of `map`. */
  coherent: boolean;
}

/** GPA of the private (confidential) region of the op's memory, 64 KiB. */
const PRIVATE_GPA = 0x4000_0000;

/** Masks drawn: 32, 24, 40, 64 bits, 2^53 (a bigint), and two that are not u64. */
export const DIRECT_MASKS: readonly bigint[] = [
  0xffff_ffffn,
  0xff_ffffn,
  (1n << 40n) - 1n,
  (1n << 64n) - 1n,
  1n << 53n,
  -1n,
  1n << 64n,
];
/** Bus limits drawn (undefined: none). */
export const DIRECT_BUS_LIMITS: readonly (bigint | undefined)[] = [
  undefined,
  0xffff_ffffn,
  (1n << 36n) - 1n,
];
/**
 * Base GPAs drawn: near each limit, the private region, beyond 2^52, negative. (A fractional GPA
 * is left out: `DmaMapError`'s constructor turns it into a `RangeError` from `BigInt`.)
 */
export const DIRECT_GPAS = [
  0,
  0xff_f000,
  0xffff_f000,
  2 ** 36 - 4096,
  2 ** 40 - 4096,
  2 ** 52 - 4096,
  PRIVATE_GPA,
  -4096,
] as const;
/** Lengths drawn. */
export const DIRECT_LENGTHS = [0, 1, 64, 4096, 8193] as const;

const U64_MAX = (1n << 64n) - 1n;

function fail(msg: string): never {
  throw new OracleFailure("dma-direct-model", msg);
}

let memory: GuestMemory | undefined;

/**
 * Runs one {@link DirectOp} against the model.
 * @returns 1 when the map succeeded, else 0.
 * @throws OracleFailure `dma-direct-model` on any disagreement.
 */
export function runDirectOp(op: DirectOp): number {
  memory ??= new GuestMemory([
    { gpa: 0, size: 0x10_0000, name: "shared" },
    { gpa: PRIVATE_GPA, size: 0x1_0000, name: "private", private: true },
  ]);
  const mask = DIRECT_MASKS[op.mask % DIRECT_MASKS.length];
  const bl = DIRECT_BUS_LIMITS[op.busLimit % DIRECT_BUS_LIMITS.length];
  const gpa = DIRECT_GPAS[op.base % DIRECT_GPAS.length] + op.off;
  const len = DIRECT_LENGTHS[op.len % DIRECT_LENGTHS.length];
  const what = `mask ${mask} bus limit ${bl} ${
    op.coherent ? "mapCoherent" : "map"
  }(${gpa}, ${len})`;
  let api: DirectDmaApi;
  const validMask = mask >= 0n && mask <= U64_MAX;
  try {
    api = new DirectDmaApi({ mask, busLimit: bl, memory });
  } catch (e) {
    if (validMask || !(e instanceof RangeError)) fail(`${what}: constructor threw ${e}`);
    return 0;
  }
  if (!validMask) fail(`${what}: constructor accepted the mask`);
  const lim = bl !== undefined && bl < mask ? bl : mask;
  const wantLimit = lim <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(lim) : lim;
  if (api.limit !== wantLimit) fail(`${what}: limit ${api.limit}, model ${wantLimit}`);
  // The model: private memory (coherent maps only), then 2^52, then the mask / bus limit.
  let want: string;
  const inPrivate = gpa >= PRIVATE_GPA && gpa < PRIVATE_GPA + 0x1_0000;
  if (op.coherent && Number.isInteger(gpa) && inPrivate) want = "private-memory";
  else if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + len > 2 ** 52) want = "mask";
  else if (BigInt(gpa + (len > 0 ? len - 1 : 0)) > lim) want = "mask";
  else want = "ok";
  let got: string;
  try {
    const bus = op.coherent ? api.mapCoherent(gpa, len) : api.map(gpa, len, 0);
    if (bus !== gpa) fail(`${what}: bus address ${bus}, model ${gpa} (no windows: bus = GPA)`);
    if (api.busToGpa(bus) !== gpa) fail(`${what}: busToGpa(${bus}) = ${api.busToGpa(bus)}`);
    got = "ok";
    if (op.coherent) api.unmapCoherent(bus, len);
    else api.unmap(bus, len, 0);
  } catch (e) {
    if (!(e instanceof DmaMapError)) throw e;
    got = e.reason;
  }
  if (got !== want) fail(`${what}: ${got}, model ${want}`);
  return got === "ok" ? 1 : 0;
}
