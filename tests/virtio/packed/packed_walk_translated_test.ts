/**
 * The packed walk's translated path for direct descriptors (`PackedChainWalk.addRecorded`: any
 * DMA view but identity), against a reference model of the walk's rules: the same segments, the
 * same errors with the same codes and ring-slot indices, and the same DMA view calls (bus
 * address, length, access, in order), for lists of one to four descriptors whose high address
 * words straddle the number path's bound (2^20), the u64 path's (2^53) and the 64-bit wrap, under
 * a scripted DMA view that splits buffers into pages, faults, answers hostile lengths and
 * translates into a hole and across a guest memory region boundary.
 *
 * The list under test starts at ring slot 1, so a descriptor's slot differs from its index in
 * the chain's record (an error must name the slot).
 */
import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  type ChainPolicy,
  GuestMemory,
  packedAvailFlags,
  PackedDeviceQueue,
  PackedRingBuilder,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqError,
} from "../../../src/mod.ts";
import type { DmaAccess, DmaAddressSpace, DmaTranslation, U64 } from "../../../src/mod.ts";

const RING = 0x1000;
const SIZE = 8;
const A = packedAvailFlags(1);
const PAGE = 0x1000;
/** Guest memory: two adjacent regions; everything from 0x20000 is a hole. */
const REGIONS = [{ gpa: 0, size: 0x14000 }, { gpa: 0x14000, size: 0xc000 }];
const MEM_END = 0x20000;

/**
 * Bus page -> GPA page 8..35 (pages 32 to 35 are the hole), a permutation; bus page 1, the
 * ring's, is GPA page 1.
 */
const gpaPage = (page: bigint) => page === 1n ? 1 : Number((page * 5n + 3n) % 28n) + 8;
/** Bus pages translated as two contiguous GPA pages (a piece may cross a region's end). */
const double = (page: bigint) => page % 5n === 2n;
/** Bus pages whose translation faults, or whose answer is hostile (one byte more than asked). */
const faults = (page: bigint) => page % 11n === 5n;
const hostile = (page: bigint) => page % 13n === 7n;

/** The scripted DMA view: records every call; one page per piece, or two. */
class PageSpace implements DmaAddressSpace {
  readonly name = "pages";
  readonly calls: [bigint, number, number][] = [];
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const b = BigInt(bus);
    this.calls.push([b, length, access]);
    const page = b / BigInt(PAGE);
    if (faults(page)) throw new Error(`page ${page} faults`);
    const off = Number(b % BigInt(PAGE));
    out.gpa = gpaPage(page) * PAGE + off;
    const span = double(page) ? 2 * PAGE : PAGE;
    out.length = hostile(page) ? length + 1 : Math.min(length, span - off);
  }
}

interface Desc {
  hi: number;
  lo: number;
  len: number;
  write: boolean;
}

interface Outcome {
  readable: [number, number][];
  writable: [number, number][];
  error: [string, number | undefined] | null;
  calls: [bigint, number, number][];
}

/** The walk's rules for a direct list at slots 1.. (framing and byte total always hold here). */
function model(descs: Desc[], policy: { zeroLength: string; maxSegments: number }): Outcome {
  const o: Outcome = { readable: [], writable: [], error: null, calls: [] };
  // On an error the device returns no chain: no segments.
  const fail = (code: string, pos: number): Outcome => ({
    readable: [],
    writable: [],
    error: [code, pos],
    calls: o.calls,
  });
  const regionEnd = (gpa: number) =>
    REGIONS.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size)?.gpa! +
    REGIONS.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size)?.size!;
  for (let k = 0; k < descs.length; k++) {
    const d = descs[k];
    const pos = 1 + k;
    if (d.len === 0) {
      if (policy.zeroLength === "reject") return fail("DESC_ZERO_LENGTH", pos);
      continue;
    }
    let bus = (BigInt(d.hi) << 32n) + BigInt(d.lo);
    if (bus + BigInt(d.len) > 1n << 64n) return fail("DESC_ADDR_WRAP", pos);
    let left = d.len;
    while (left > 0) {
      o.calls.push([bus, left, d.write ? 2 : 1]);
      const page = bus / BigInt(PAGE);
      if (faults(page)) return fail("DESC_BUFFER_FAULT", pos);
      const off = Number(bus % BigInt(PAGE));
      const gpa = gpaPage(page) * PAGE + off;
      const span = double(page) ? 2 * PAGE : PAGE;
      let n = hostile(page) ? left + 1 : Math.min(left, span - off);
      if (gpa >= MEM_END || n < 1 || n > left) return fail("DESC_BUFFER_FAULT", pos);
      n = Math.min(n, regionEnd(gpa) - gpa);
      if (o.readable.length + o.writable.length >= policy.maxSegments) {
        return fail("CHAIN_TOO_MANY_SEGMENTS", pos);
      }
      (d.write ? o.writable : o.readable).push([gpa, n]);
      left -= n;
      bus += BigInt(n);
    }
  }
  return o;
}

/** The packed device's answer: a warm-up buffer at slot 0, then the list from slot 1. */
function device(descs: Desc[], policy: Partial<ChainPolicy>): Outcome {
  const memory = new GuestMemory(REGIONS);
  const ring = new PackedRingBuilder(memory, RING, SIZE);
  const dma = new PageSpace();
  const dev = new PackedDeviceQueue({
    memory,
    dma,
    size: SIZE,
    addresses: { descAddr: RING, driverAddr: RING + 16 * SIZE, deviceAddr: RING + 16 * SIZE + 4 },
    features: 0n,
    policy,
  });
  // Warm-up: bus page 0 (GPA page 11, in the first region), so a region is cached.
  ring.write(0, { addr: 0x10n, len: 0x20, id: 9, flags: A });
  const warm = dev.pop()!;
  dev.push(warm, 0);
  dev.flush();
  dma.calls.length = 0;
  descs.forEach((d, k) =>
    ring.write(1 + k, {
      addr: (BigInt(d.hi) << 32n) + BigInt(d.lo),
      len: d.len,
      id: 5,
      flags: A | (d.write ? VIRTQ_DESC_F_WRITE : 0) |
        (k < descs.length - 1 ? VIRTQ_DESC_F_NEXT : 0),
    })
  );
  const o: Outcome = { readable: [], writable: [], error: null, calls: dma.calls };
  try {
    const c = dev.pop()!;
    for (let i = 0; i < c.readableCount; i++) o.readable.push([c.readableGpa[i], c.readableLen[i]]);
    for (let i = 0; i < c.writableCount; i++) o.writable.push([c.writableGpa[i], c.writableLen[i]]);
  } catch (e) {
    if (!(e instanceof VirtqError)) throw e;
    o.error = [e.code, e.index];
  }
  return o;
}

const hiArb = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 0xf_fffe }),
  fc.constantFrom(0xf_ffff, 0x10_0000, 0x10_0001, 0x1f_ff00, 0x1f_ff01, 0x1f_ffff, 0x20_0000),
  fc.integer({ min: 0x10_0000, max: 0xffff_ffff }),
  fc.constant(0xffff_ffff),
);
const descArb = fc.record({
  hi: hiArb,
  lo: fc.oneof(
    fc.integer({ min: 0, max: 0xffff_ffff }),
    fc.integer({ min: 0xffff_c000, max: 0xffff_ffff }),
  ),
  len: fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: 0x100 }), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 0x2400 }), weight: 2 },
    { arbitrary: fc.constant(0), weight: 1 },
  ),
  write: fc.boolean(),
});

Deno.test("packed walk: a translated direct list gives the model's segments, errors (code, slot) and DMA calls", () => {
  fc.assert(
    fc.property(
      fc.array(descArb, { minLength: 1, maxLength: 4 }),
      fc.constantFrom("reject", "allow"),
      fc.constantFrom(1, 2, 3, 65536),
      (raw, zeroLength, maxSegments) => {
        // Framing: device-readable descriptors first (§2.8.4).
        const descs = [...raw.filter((d) => !d.write), ...raw.filter((d) => d.write)];
        const policy = { zeroLength, maxSegments } as Partial<ChainPolicy>;
        assertEquals(device(descs, policy), model(descs, { zeroLength, maxSegments }));
      },
    ),
    { numRuns: 1500 },
  );
});

Deno.test("packed walk: translated known answers (pieces, region clip, slot-named errors)", () => {
  const policy = {};
  // One writable buffer over two bus pages (page 3 -> GPA page 26, page 4 -> 31).
  assertEquals(device([{ hi: 0, lo: 0x3800, len: 0x1000, write: true }], policy), {
    readable: [],
    writable: [[0x1a800, 0x800], [0x1f000, 0x800]],
    error: null,
    calls: [[0x3800n, 0x1000, 2], [0x4000n, 0x800, 2]],
  });
  // Bus page 52 -> GPA pages 19 and 20 in one piece, clipped at the region end (0x14000); the
  // rest is asked for at the bus address after the clipped piece (page 53 -> GPA page 24).
  assertEquals(device([{ hi: 0, lo: 52 * PAGE + 0x800, len: 0x1000, write: false }], policy), {
    readable: [[0x13800, 0x800], [0x18000, 0x800]],
    writable: [],
    error: null,
    calls: [[0x34800n, 0x1000, 1], [0x35000n, 0x800, 1]],
  });
  // High word 2^20 - 1 (number path) and 2^20 (general path): exact bus addresses.
  for (const hi of [0xf_ffff, 0x10_0000]) {
    const bus = (BigInt(hi) << 32n) + 0x1010n;
    const r = device([
      { hi: 0, lo: 0x10, len: 8, write: false },
      { hi, lo: 0x1010, len: 8, write: false },
    ], policy);
    assertEquals(r.readable, [[gpaPage(0n) * PAGE + 0x10, 8], [
      gpaPage(bus / 0x1000n) * PAGE + 0x10,
      8,
    ]]);
    assertEquals(r.calls, [[0x10n, 8, 1], [bus, 8, 1]]);
  }
  // A fault (bus page 5) on the second descriptor names its ring slot (2), not its record index.
  const fault = device([
    { hi: 0, lo: 0x10, len: 8, write: false },
    { hi: 0, lo: 5 * PAGE, len: 8, write: true },
  ], policy);
  assertEquals(fault.error, ["DESC_BUFFER_FAULT", 2]);
  assertEquals(fault.calls, [[0x10n, 8, 1], [0x5000n, 8, 2]]);
});
