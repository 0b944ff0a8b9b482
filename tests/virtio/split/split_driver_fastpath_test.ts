// The split driver's one-segment RawGpaDmaApi fast path in add() must behave exactly like the
// general path: same descriptor table, available ring, errors, used tokens and lengths. The
// general path is forced with a RawGpaDmaApi subclass (the fast path takes only the exact class).

import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  featureMask,
  GuestMemory,
  RawGpaDmaApi,
  SgList,
  SplitDriverQueue,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_VERSION_1,
  VirtqError,
} from "../../../src/mod.ts";

class GeneralRawGpaDmaApi extends RawGpaDmaApi {}

const SIZE = 8, RING = 0x1000;

function rig(fast: boolean, features: bigint) {
  const memory = new GuestMemory([{ gpa: 0, size: 0x10000, name: "ram" }]);
  const dma = fast ? new RawGpaDmaApi() : new GeneralRawGpaDmaApi();
  const q = new SplitDriverQueue<number>({ memory, dma, size: SIZE, features, ringGpa: RING });
  const used = RING + q.placement.usedOffset;
  const ring = () => Array.from(memory.view(RING, q.placement.usedOffset));
  /** Completes the oldest published buffer with length `len` (device side, by hand). */
  const complete = (len: number, seen: { avail: number; used: number }) => {
    const head = memory.dataView(RING + q.placement.availOffset + 4 + 2 * (seen.avail % SIZE), 2)
      .getUint16(0, true);
    seen.avail++;
    const v = memory.dataView(used, 4 + 8 * SIZE);
    v.setUint32(4 + 8 * (seen.used % SIZE), head, true);
    v.setUint32(8 + 8 * (seen.used % SIZE), len, true);
    v.setUint16(2, ++seen.used & 0xffff, true);
  };
  return { q, ring, complete, seen: { avail: 0, used: 0 } };
}

type Op =
  | { k: "add"; gpa: number; len: number; w: boolean }
  | { k: "use"; len: number }
  | { k: "get" };

const edgeGpa = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(-1, -0.5, 0.5, 2 ** 32 - 1, 2 ** 32, 2 ** 52 - 16, 2 ** 52, 2 ** 53, NaN),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("add" as const),
    gpa: edgeGpa,
    len: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(0, 16, 0xffff_ffff)),
    w: fc.boolean(),
  }),
  fc.record({ k: fc.constant("use" as const), len: fc.integer({ min: 0, max: 5000 }) }),
  fc.record({ k: fc.constant("get" as const) }),
);

function run(fast: boolean, features: bigint, ops: readonly Op[]): unknown[] {
  const r = rig(fast, features);
  const out: unknown[] = [];
  let tok = 0;
  for (const o of ops) {
    try {
      if (o.k === "add") {
        const seg = SgList.of();
        seg.push(o.gpa, o.len); // push() does not validate: hostile values reach add()
        if (o.w) r.q.add(SgList.of(), seg, tok++);
        else r.q.add(seg, SgList.of(), tok++);
        r.q.kick();
        out.push("added", r.q.numFree);
      } else if (o.k === "use") {
        if (r.seen.avail < r.q.availIdx) r.complete(o.len, r.seen);
        out.push("used");
      } else {
        const t = r.q.getUsed();
        out.push(t, t === undefined ? null : r.q.usedLen);
      }
    } catch (e) {
      out.push(e instanceof VirtqError ? `${e.code}:${e.message}` : String(e));
    }
    out.push(r.ring());
  }
  return out;
}

Deno.test("split add: the one-segment RawGpaDmaApi fast path equals the general path", () => {
  for (
    const features of [
      featureMask(VIRTIO_F_VERSION_1),
      featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER),
    ]
  ) {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        assertEquals(run(true, features, ops), run(false, features, ops));
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("split add: the fast path refuses exactly what RawGpaDmaApi refuses", () => {
  const r = rig(true, featureMask(VIRTIO_F_VERSION_1));
  const seg = SgList.of();
  seg.push(2 ** 52 - 8, 16);
  let code = "";
  try {
    r.q.add(seg, SgList.of(), 1);
  } catch (e) {
    code = (e as VirtqError).code;
  }
  assertEquals(code, "DMA_MAP_FAILED");
  assertEquals(r.q.numFree, SIZE);
  seg.clear().push(0x2000, 0);
  try {
    r.q.add(SgList.of(), seg, 2);
  } catch (e) {
    code = (e as VirtqError).code;
  }
  assertEquals(code, "BUFFER_EMPTY");
  assertEquals(r.q.outstanding, 0);
});
