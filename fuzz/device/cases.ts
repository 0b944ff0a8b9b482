/**
 * The cases of a device campaign (`deno task fuzz --device ...`): what a hostile driver does to
 * a real vhost-user back-end, JSON-safe (corpus files) and drawn from the SAME arbitraries the
 * engine's hostile-driver targets use (`fuzz/arbitraries/split_hostile_driver_input.ts`,
 * `fuzz/support/activation.ts`), so a device sees the corruptions our own device model sees.
 *
 * Classes (the rows of the summary table):
 * - `valid`: valid chains, no corruption (the baseline);
 * - `desc-table`: descriptor table corruptions (loops, next out of range, readable after
 *   writable, address wrap / unbacked / high, zero and huge lengths, unknown flags, ...);
 * - `indirect`: indirect table corruptions (nested, misaligned, empty, too long, with NEXT,
 *   unbacked table, WRITE flag, INDIRECT not negotiated);
 * - `indices`: available ring head and index corruptions (head out of range, index jump and
 *   going back, a head offered twice);
 * - `event-suppression`: valid chains with EVENT_IDX and hostile `flags` / `used_event`;
 * - `activation`: hostile vring set-up (sizes 0, non-powers of 2, > 32768; ring addresses
 *   misaligned, across and outside the memory table);
 * - `packed-valid`, `packed-desc`, `packed-wrap`, `packed-raw`, `packed-event` (packed ring,
 *   back-ends that offer VIRTIO_F_RING_PACKED): lists drawn from the packed hostile-driver
 *   target (`fuzz/targets/packed_hostile_driver.ts`) with no corruption, one descriptor field
 *   (flags, len, addr, id) corrupted, the AVAIL/USED bits of one descriptor set to a drawn
 *   pair (wrap-counter confusion), raw bytes over the ring and tables, and a hostile driver
 *   event suppression structure;
 * - `real-ring`: a split ring captured from a Linux guest under QEMU (`tests/fixtures/`, the
 *   hostile-driver targets' real-ring seeds) with one targeted corruption, relocated into the
 *   back-end's guest memory;
 * - `translation` (ACCESS_PLATFORM on testpmd): IOVAs never mapped, wrong permissions, a buffer
 *   over IOVA pages mapped to scattered GPAs, an invalidate while the buffer is in flight, the
 *   lazy stale window.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  type Corruption,
  hostileDriverInputArbitrary,
  hostileDriverInputSchema,
} from "../arbitraries/split_hostile_driver_input.ts";
import { activationArbitrary } from "../support/activation.ts";
import {
  packedHostileDriverInputArbitrary,
  packedHostileDriverInputSchema,
} from "../targets/packed_hostile_driver.ts";
import { REAL_RING_SEEDS, realRingArbitrary } from "../support/real_ring_seeds.ts";

/** Hostile classes, in table order. */
export const DEVICE_CLASSES = [
  "valid",
  "desc-table",
  "indirect",
  "indices",
  "event-suppression",
  "activation",
  "translation",
  "packed-valid",
  "packed-desc",
  "packed-wrap",
  "packed-raw",
  "packed-event",
  "real-ring",
] as const;

/** A hostile class. */
export type DeviceClass = typeof DEVICE_CLASSES[number];

/** Translation edge cases (ACCESS_PLATFORM, device IOTLB fed from our IOMMU model). */
export const TRANSLATION_KINDS = [
  "never-mapped",
  "write-to-readonly",
  "rw-on-writeonly",
  "scattered-pages",
  "invalidate-in-flight",
  "lazy-stale-window",
] as const;

/** The class of a split-ring corruption kind. */
export function classOfCorruption(kind: Corruption): DeviceClass {
  if (kind === "none") return "valid";
  if (kind.startsWith("ind-")) return "indirect";
  if (["head-oob", "idx-jump", "idx-back", "dup-head"].includes(kind)) return "indices";
  return "desc-table";
}

const activationSchema = z.strictObject({
  size: z.int().min(0).max(0xffff_ffff),
  desc: z.int().min(0),
  driver: z.int().min(0),
  device: z.int().min(0),
  base: z.int().min(0).max(0xffff),
  /** `image`: addresses relative to the image block at the end of guest RAM; `absolute`: raw user addresses. */
  frame: z.enum(["image", "absolute"]),
});

/** zod schema of one device case (corpus `input`). */
export const deviceCaseSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("split-ring"),
    /** Which vring is hostile: net `rx` (vring 0) / `tx` (vring 1); blk `req` (vring 0). */
    vring: z.enum(["rx", "tx", "req"]),
    input: hostileDriverInputSchema,
    /** `event-suppression` class: avail `flags` and `used_event` written after the build. */
    events: z.strictObject({
      flags: z.int().min(0).max(0xffff),
      usedEvent: z.int().min(0).max(0xffff),
    })
      .nullable(),
  }),
  z.strictObject({
    kind: z.literal("activation"),
    vring: z.enum(["rx", "tx", "req"]),
    activation: activationSchema,
  }),
  z.strictObject({
    kind: z.literal("packed-ring"),
    vring: z.enum(["rx", "tx", "req"]),
    input: packedHostileDriverInputSchema,
  }),
  z.strictObject({
    kind: z.literal("real-ring"),
    vring: z.enum(["rx", "tx", "req"]),
    /** The seed's name (`scenarioA/virtio-net/0`) and the corruption applied to it. */
    seed: z.string().min(1),
    corruption: z.strictObject({
      area: z.enum(["desc", "driver", "device", "table"]),
      offset: z.int().min(0),
      width: z.union([z.literal(1), z.literal(2), z.literal(4)]),
      value: z.int().min(0).max(0xffff_ffff),
      field: z.string(),
    }),
  }),
  z.strictObject({
    kind: z.literal("translation"),
    what: z.enum(TRANSLATION_KINDS),
    /** RX (vring 0) or TX (vring 1) buffer the edge case is about. */
    vring: z.enum(["rx", "tx"]),
    value: z.int().min(0),
  }),
]);

/** One device case. */
export type DeviceCase = z.infer<typeof deviceCaseSchema>;

/** The class a case is reported under. */
export function classOf(c: DeviceCase): DeviceClass {
  if (c.kind === "activation") return "activation";
  if (c.kind === "translation") return "translation";
  if (c.kind === "real-ring") return "real-ring";
  if (c.kind === "packed-ring") {
    const i = c.input;
    if (i.corruption !== null) {
      return i.corruption.field === "avail" ? "packed-wrap" : "packed-desc";
    }
    if (i.raw.length > 0) return "packed-raw";
    if (i.drvEvent != null) return "packed-event";
    return "packed-valid";
  }
  if (c.events !== null) return "event-suppression";
  return classOfCorruption(c.input.corruption.kind);
}

/** Which device a back-end is. */
export type DeviceType = "net" | "blk";

/** Split real-ring seeds for a device of `type` (its own device type first, else every split seed). */
export function realRingSeedsFor(type: DeviceType) {
  const split = REAL_RING_SEEDS.filter((s) => s.layout === "split");
  const own = split.filter((s) => s.name.includes(type === "net" ? "virtio-net" : "virtio-blk"));
  return own.length > 0 ? own : split;
}

/**
 * Cases for a device of `type`; `translation` only when the campaign has an IOMMU back-end,
 * packed classes only when the back-end offers VIRTIO_F_RING_PACKED (`packed`), `real-ring`
 * when the bundled captures loaded.
 */
export function deviceCaseArbitrary(
  type: DeviceType,
  translation: boolean,
  packed = false,
): fc.Arbitrary<DeviceCase> {
  const vring = type === "net"
    ? fc.constantFrom("rx" as const, "tx" as const)
    : fc.constant("req" as const);
  const ring = fc.record({
    kind: fc.constant("split-ring" as const),
    vring,
    input: hostileDriverInputArbitrary,
    events: fc.constant(null),
  }, { noNullPrototype: true });
  const events = fc.record({
    kind: fc.constant("split-ring" as const),
    vring,
    input: hostileDriverInputArbitrary.map((i) => ({
      ...i,
      corruption: { ...i.corruption, kind: "none" as const },
      raw: null,
    })),
    events: fc.record({
      flags: fc.constantFrom(0, 1, 2, 0xffff, 0x8001),
      usedEvent: fc.oneof(fc.constantFrom(0, 1, 0xffff, 0x7fff), fc.nat(0xffff)),
    }, { noNullPrototype: true }),
  }, { noNullPrototype: true });
  // The image block is 0x40000 bytes at the end of guest RAM: addresses past it are outside
  // the memory table.
  const activation = fc.record({
    kind: fc.constant("activation" as const),
    vring,
    activation: fc.tuple(
      activationArbitrary("split", 0x40000),
      fc.oneof(fc.constant(0), fc.nat(0xffff)),
      fc.oneof(
        { arbitrary: fc.constant("image" as const), weight: 4 },
        { arbitrary: fc.constant("absolute" as const), weight: 1 },
      ),
      fc.constantFrom(0, 0x1000, 0xffff_f000, 2 ** 47, 2 ** 52),
    ).map(([a, base, frame, abs]) => ({
      size: a.size,
      desc: frame === "absolute" ? abs : a.desc,
      driver: frame === "absolute" ? abs + 0x1000 : a.driver,
      device: frame === "absolute" ? abs + 0x2000 : a.device,
      base,
      frame,
    })),
  }, { noNullPrototype: true });
  const arbs: fc.WeightedArbitrary<DeviceCase>[] = [
    { arbitrary: ring, weight: 8 },
    { arbitrary: events, weight: 1 },
    { arbitrary: activation, weight: 2 },
  ];
  if (packed) {
    arbs.push({
      arbitrary: fc.record({
        kind: fc.constant("packed-ring" as const),
        vring,
        input: packedHostileDriverInputArbitrary(),
      }, { noNullPrototype: true }),
      weight: 8,
    });
  }
  const seeds = realRingSeedsFor(type);
  if (seeds.length > 0) {
    arbs.push({
      arbitrary: fc.tuple(vring, realRingArbitrary(seeds)).map(([v, r]) => ({
        kind: "real-ring" as const,
        vring: v,
        seed: r.seed.name,
        corruption: {
          area: r.corruption.area,
          offset: r.corruption.offset,
          width: r.corruption.width,
          value: r.corruption.value,
          field: r.corruption.field,
        },
      })),
      weight: 2,
    });
  }
  if (translation) {
    arbs.push({
      arbitrary: fc.record({
        kind: fc.constant("translation" as const),
        what: fc.constantFrom(...TRANSLATION_KINDS),
        vring: fc.constantFrom("rx" as const, "tx" as const),
        value: fc.nat(0xffff),
      }, { noNullPrototype: true }),
      weight: 2,
    });
  }
  return fc.oneof(...arbs);
}

/** The fast-check seed of case number `i` of a campaign with `seed`. */
export function caseSeed(seed: number, i: number): number {
  return (seed + Math.imul(i, 0x9e3779b1)) | 0;
}

/**
 * Case number `i` of a campaign with `seed` (deterministic: the replay key is seed + index). It
 * is also the first value `fc.check` draws with {@link caseSeed}, which is how findings shrink.
 */
export function nthCase(arb: fc.Arbitrary<DeviceCase>, seed: number, i: number): DeviceCase {
  return fc.sample(arb, { seed: caseSeed(seed, i), numRuns: 1 })[0];
}
