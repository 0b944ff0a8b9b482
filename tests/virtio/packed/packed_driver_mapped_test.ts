// The packed driver's mapped one-segment add (#addGeneral's own body) and the unmapping
// completion in getUsed's fast path must behave exactly like the general path under a mapping
// DMA API: the same ring bytes, tokens, used lengths, free counts, errors, swiotlb counters and
// memory. The general path is forced by hiding `mapNumber` behind a wrapper. The device is the
// real packed device over the bounce slots (swiotlb over dma-direct: bus address = the slot's
// GPA).

import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  DirectDmaApi,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  PackedDeviceQueue,
  PackedDriverQueue,
  SgList,
  SwiotlbDmaApi,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VirtqError,
} from "../../../src/mod.ts";
import { withoutMapNumber } from "../_without_map_number.ts";

const SIZE = 7, RING = 0x1000, POOL = 0x10_0000, BUFS = 0x8000;

type Op =
  | { k: "add"; segs: [number, number][]; w: number }
  | { k: "device"; cut: number; value: number }
  | { k: "get" }
  | { k: "cb"; on: boolean };

const seg = fc.tuple(fc.integer({ min: 0, max: 0x6000 }), fc.integer({ min: 1, max: 2048 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("add" as const),
      segs: fc.oneof(
        { weight: 4, arbitrary: fc.array(seg, { minLength: 1, maxLength: 1 }) },
        { weight: 1, arbitrary: fc.array(seg, { minLength: 0, maxLength: 3 }) },
        // hostile: empty, past guest memory, fractional
        {
          weight: 1,
          arbitrary: fc.array(
            fc.tuple(fc.constantFrom(0, 0x3_0000, -1, 0.5), fc.constantFrom(0, 16, 4096)),
            { minLength: 1, maxLength: 1 },
          ),
        },
      ),
      w: fc.nat(3), // how many of the segments (from the end) are device-writable
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("device" as const),
      cut: fc.nat(40),
      value: fc.nat(255),
    }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("get" as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cb" as const), on: fc.boolean() }) },
);

// Guest memory with an 8-slot swiotlb pool (exhaustion is reachable) and a packed driver over
// it: `fast` with swiotlb's mapNumber (the mapped one-segment add), else without (general path).
function mappedDriver(
  fast: boolean,
  features: bigint,
  policy?: { usedLenExceedsCapacity: "reject" | "clamp" },
) {
  const memory = new GuestMemory([
    { gpa: 0, size: 0x2_0000, name: "ram" },
    { gpa: POOL, size: 0x4000, name: "swiotlb" },
  ]);
  const sw = new SwiotlbDmaApi({
    memory,
    poolGpa: POOL,
    poolSize: 0x4000,
    inner: new DirectDmaApi(),
  });
  const drv = new PackedDriverQueue<number>({
    memory,
    dma: fast ? sw : withoutMapNumber(sw),
    size: SIZE,
    features,
    ringGpa: RING,
    ...(policy ? { policy } : {}),
  });
  return { memory, sw, drv };
}

function run(fast: boolean, features: bigint, ops: readonly Op[]): unknown[] {
  const { memory, sw, drv } = mappedDriver(fast, features);
  const dev = new PackedDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size: SIZE,
    addresses: drv.addresses,
    features,
  });
  const out: unknown[] = [];
  let tok = 0;
  for (const o of ops) {
    try {
      if (o.k === "add") {
        const n = o.segs.length;
        const w = Math.min(o.w, n);
        const r = SgList.of(), wr = SgList.of();
        // push() does not validate: hostile values reach add()
        o.segs.forEach(([g, l], i) => (i < n - w ? r : wr).push(BUFS + g, l));
        drv.add(r, wr, tok++);
        drv.kick();
        out.push("added", drv.numFree);
      } else if (o.k === "device") {
        // the device consumes every available chain, writes its writable bytes (through the
        // bounce slots) and reports `cut` bytes fewer than its capacity
        for (let c = dev.pop(); c !== null; c = dev.pop()) {
          for (let i = 0; i < c.writableCount; i++) {
            memory.fill(c.writableGpa[i], c.writableLen[i], o.value);
          }
          dev.push(c, Math.max(0, c.writableBytes - o.cut));
        }
        dev.flush();
        out.push("device");
      } else if (o.k === "get") {
        const t = drv.getUsed();
        out.push(t, t === undefined ? null : drv.usedLen, drv.numFree, drv.outstanding);
      } else if (o.on) out.push(drv.enableCallbacks());
      else drv.disableCallbacks();
    } catch (e) {
      out.push(e instanceof VirtqError ? `${e.code}:${e.message}` : String(e));
    }
    out.push(
      Array.from(memory.view(RING, 16 * SIZE)),
      JSON.stringify([sw.stats, sw.usedSlots]),
      Array.from(memory.view(BUFS, 0x8000)).reduce((h, x) => (Math.imul(h, 31) + x) | 0, 0),
    );
  }
  return out;
}

Deno.test("packed driver: the mapped one-segment add and unmapping completion equal the general path", () => {
  for (
    const features of [
      featureMask(),
      featureMask(VIRTIO_F_EVENT_IDX),
      featureMask(VIRTIO_F_IN_ORDER),
    ]
  ) {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        assertEquals(run(true, features, ops), run(false, features, ops));
      }),
      { numRuns: 200 },
    );
  }
});

// The mapped one-segment add records the buffer's writable capacity (0 for a device-readable
// segment, the length for a device-writable one) as the general path does: a hostile device's
// used length over it is refused (policy "reject") or clamped to it ("clamp") alike. The device
// here writes the used descriptor itself (the real device never reports more than it was given).
Deno.test("packed driver: the mapped one-segment add's writable capacity bounds a hostile used len as the general path's", () => {
  const lens = [0, 1, 63, 64, 65, 0xffff_ffff];
  const policies = ["reject", "clamp"] as const;
  const one = (fast: boolean, readable: boolean, len: number, policy: "reject" | "clamp") => {
    const { memory, sw, drv } = mappedDriver(fast, featureMask(), {
      usedLenExceedsCapacity: policy,
    });
    // a first buffer (ID 0) warms swiotlb's one-slot mapNumber (it answers -1 on a fresh pool,
    // whose last region is not yet known): the one under test (ID 1) takes the mapped add
    drv.add(SgList.of(), SgList.of([BUFS + 0x1000, 64]), 8);
    const seg = SgList.of([BUFS, 64]);
    drv.add(readable ? seg : SgList.of(), readable ? SgList.of() : seg, 9);
    drv.kick();
    // used descriptor at slot 0: len, ID 1, flags AVAIL | USED | WRITE (used wrap counter 1)
    memory.writeU32(RING + 8, len);
    memory.writeU16(RING + 12, 1);
    memory.writeU16(RING + 14, 0x8082);
    try {
      const t = drv.getUsed();
      return [t, drv.usedLen, drv.numFree, JSON.stringify(sw.stats)];
    } catch (e) {
      return [(e as VirtqError).code, drv.numFree, JSON.stringify(sw.stats)];
    }
  };
  for (const policy of policies) {
    for (const readable of [true, false]) {
      for (const len of lens) {
        const fast = one(true, readable, len, policy);
        assertEquals(fast, one(false, readable, len, policy), `${policy} ${readable} ${len}`);
        // known answers: capacity 0 (readable) or 64 (writable)
        const cap = readable ? 0 : 64;
        if (len <= cap) assertEquals(fast.slice(0, 2), [9, len]);
        else if (policy === "clamp") assertEquals(fast.slice(0, 2), [9, cap]);
        else assertEquals(fast[0], "USED_LEN_EXCEEDS_CAPACITY");
      }
    }
  }
});
