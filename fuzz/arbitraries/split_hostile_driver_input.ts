/**
 * The input shape of the `split-hostile-driver` target: valid chains, one targeted corruption,
 * an optional raw overlay. The zod schema (corpus files), the type inferred from it and the
 * arbitrary sit side by side so they cannot drift.
 *
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { chainPolicyArbitrary, chainPolicySchema } from "./chain_policy.ts";
import { hexBytesArbitrary, hexBytesSchema } from "./hex_bytes.ts";

/** Corruption kinds: each targets one check of the device. */
export const CORRUPTIONS = [
  "none",
  "loop",
  "next-oob",
  "head-oob",
  "idx-jump",
  "idx-back",
  "readable-after-writable",
  "addr-wrap",
  "addr-unbacked",
  "addr-high",
  "len-zero",
  "len-huge",
  "ind-nested",
  "ind-len-misaligned",
  "ind-len-zero",
  "ind-too-long",
  "ind-with-next",
  "ind-table-unbacked",
  "ind-write-flag",
  "ind-no-feature",
  "unknown-flags",
  "dup-head",
  "flags-xor",
  "next-any",
  // The same kinds inside an indirect table (entry `at` of the chain's table), each with the
  // boundary values of its check: next = entries (first out of range) .. 0xffff, a loop back to
  // any entry, len 0 / 2^32 - 1 / a running total just past 2^32 - 1, addr + len ending exactly
  // at 2^64 (legal) or one byte past, an address past guest memory or above 2^52, readable after
  // writable, reserved flag bits, any flags, any next.
  "tbl-loop",
  "tbl-next-oob",
  "tbl-len-zero",
  "tbl-len-huge",
  "tbl-bytes-overflow",
  "tbl-addr-wrap",
  "tbl-addr-unbacked",
  "tbl-addr-high",
  "tbl-readable-after-writable",
  "tbl-unknown-flags",
  "tbl-flags-xor",
  "tbl-next-any",
] as const;

/** A corruption kind. */
export type Corruption = typeof CORRUPTIONS[number];

/** zod schema of one valid chain to build before the corruption. */
export const chainSpecSchema = z.strictObject({
  /** Device-readable segment lengths (bytes, >= 1). */
  readable: z.array(z.number().int().min(1).max(0x10000)),
  /** Device-writable segment lengths (bytes, >= 1). */
  writable: z.array(z.number().int().min(1).max(0x10000)),
  /** Index of the first segment that goes into an indirect table; -1 = no table. */
  indirectAt: z.number().int().min(-1),
});

/** One valid chain to build before the corruption. */
export type ChainSpec = z.infer<typeof chainSpecSchema>;

/** zod schema of one input (JSON-safe as is; `raw` bytes are a hex string). */
export const hostileDriverInputSchema = z.strictObject({
  /** Queue Size, a power of 2 in 2..64. */
  size: z.number().int().refine((n) => [2, 4, 8, 16, 32, 64].includes(n), {
    error: "size must be a power of 2 in 2..64",
  }),
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: z.boolean(),
  /** VIRTIO_F_IN_ORDER negotiated (descriptors then sequential). */
  inOrder: z.boolean(),
  /**
   * VIRTIO_F_EVENT_IDX negotiated; absent in older corpus files (false). The hostile driver then
   * asks for used buffer notifications with `used_event` (else with avail `flags`).
   */
  eventIdx: z.boolean().default(false),
  /**
   * What the driver writes to ask for (or suppress) used buffer notifications: avail `flags`
   * bit 0 (`VIRTQ_AVAIL_F_NO_INTERRUPT`) without EVENT_IDX, `used_event` with it; absent: 0.
   */
  usedEvent: z.number().int().min(0).max(0xffff).default(0),
  /**
   * The device sees guest memory through a translating window, bus = GPA + 2^52 (descriptors and
   * tables carry bus addresses): buffers take the walk's wide-address path. Absent: false.
   */
  wide: z.boolean().default(false),
  /** Device policy. */
  policy: chainPolicySchema,
  /** Seed of the descriptor-index permutation (ignored with IN_ORDER). */
  permSeed: z.number().int().min(0),
  /** The valid chains (1..3). */
  chains: z.array(chainSpecSchema).min(1).max(8),
  /** The one corruption. */
  corruption: z.strictObject({
    kind: z.enum(CORRUPTIONS),
    chain: z.number().int().min(0),
    at: z.number().int().min(0),
    value: z.number().int().min(0),
  }),
  /** Optional raw overlay: area, byte offset, hex bytes. */
  raw: z.strictObject({
    area: z.enum(["desc", "avail", "table"]),
    offset: z.number().int().min(0),
    hex: hexBytesSchema,
  }).nullable(),
});

/** One input of the `split-hostile-driver` target. */
export type HostileDriverInput = z.infer<typeof hostileDriverInputSchema>;

const segLen = fc.integer({ min: 1, max: 600 });

/** 0..4 readable and 0..4 writable segments of 1..600 bytes, an indirect table from -1..5. */
export const chainSpecArbitrary: fc.Arbitrary<ChainSpec> = fc.record({
  readable: fc.array(segLen, { maxLength: 4 }),
  writable: fc.array(segLen, { maxLength: 4 }),
  indirectAt: fc.integer({ min: -1, max: 5 }),
}, { noNullPrototype: true });

/** Inputs of the `split-hostile-driver` target (one raw overlay in six). */
export const hostileDriverInputArbitrary: fc.Arbitrary<HostileDriverInput> = fc.record({
  size: fc.constantFrom(2, 4, 8, 16, 64),
  indirect: fc.boolean(),
  inOrder: fc.boolean(),
  eventIdx: fc.boolean(),
  usedEvent: fc.oneof(fc.nat(4), fc.constant(0xffff), fc.nat(0xffff)),
  wide: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, fc.constant(true)),
  policy: chainPolicyArbitrary([65536, 65536, 4, 2]),
  permSeed: fc.nat(),
  chains: fc.array(chainSpecArbitrary, { minLength: 1, maxLength: 3 }),
  corruption: fc.record({
    kind: fc.constantFrom(...CORRUPTIONS),
    chain: fc.nat(3),
    at: fc.nat(8),
    value: fc.nat(),
  }, { noNullPrototype: true }),
  raw: fc.option(
    fc.record({
      area: fc.constantFrom("desc" as const, "avail" as const, "table" as const),
      offset: fc.nat(2048),
      hex: hexBytesArbitrary({ minLength: 1, maxLength: 48 }),
    }, { noNullPrototype: true }),
    { freq: 6 },
  ),
}, { noNullPrototype: true });
