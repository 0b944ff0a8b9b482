/**
 * Fuzz target `packed-hostile-driver`: a hostile driver against the packed device
 * (`PackedDeviceQueue`). The target writes valid lists (direct and indirect, possibly wrapping the
 * ring end) with its own raw writer, then applies one targeted corruption and raw byte patches,
 * and pops until nothing is available or the device refuses.
 *
 * Oracles: every popped chain is exactly what an independent reference decoder reads from the
 * bytes (`packed_reference.ts`), or the device throws a catalogued `VirtqError` whose code the
 * reference also found; nothing else is thrown; after an error the queue is broken and pops
 * return `null`; the device touches only memory the descriptors name (GuestMemory.observer);
 * the loop is bounded by the Queue Size.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { chainPolicyArbitrary, chainPolicySchema } from "../arbitraries/chain_policy.ts";
import { ScratchMemory } from "../support/scratch_memory.ts";
import { type ActivationOnlyInput, withActivation } from "../support/activation.ts";
import { IdentityAddressSpace } from "../../src/dma/mod.ts";
import {
  type Chain,
  type ChainPolicy,
  DEFAULT_CHAIN_POLICY,
  featureMask,
  isVirtqError,
  PackedDeviceQueue,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
} from "../../src/virtio/mod.ts";
import { type RealRingInput, withRealRingSeeds } from "../support/real_ring_seeds.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import { packedAvailFlags, PackedRingBuilder } from "../../src/virtio/mod.ts";
import { refDecode } from "../support/packed_reference.ts";
import { describeRing } from "../support/ring_describe.ts";

const MEM = 0x20000;
const RING = 0x1000;
const TABLES = 0x2000; // 0x200 bytes (32 entries) per table, up to 24 tables
const BUFS = 0x8000; // 0x100 bytes per segment
/**
 * Guest memory is three adjacent regions, split at the pages after `BUFS`, and the fuzz runs lay
 * their buffers from segment {@link SEG0} on, so the first lists' buffers lie on both sides of a
 * split: the walk's region cache misses mid-list and the general translation path (`#addPiece`)
 * meets the segment limit too, not only the identity fast path. A buffer across a split is one
 * segment per region (the reference decoder knows the splits).
 */
const SPLITS = [BUFS + 0x1000, BUFS + 0x2000] as const;
/** First segment of the fuzz runs' buffers (4 segments before the first split). */
const SEG0 = 12;

const chainSchema = z.strictObject({
  readable: z.array(z.number().int().min(0).max(0x100)).max(6),
  writable: z.array(z.number().int().min(0).max(0x100)).max(6),
  indirect: z.boolean(),
  id: z.number().int().min(0).max(0xffff),
});

const inputSchema = z.strictObject({
  size: z.number().int().min(1).max(16),
  indirect: z.boolean(),
  inOrder: z.boolean(),
  /** VIRTIO_F_EVENT_IDX negotiated (absent in older corpus files: no). */
  eventIdx: z.boolean().optional(),
  /**
   * The driver's event suppression structure (§2.8.10), written before the lists: flags (0
   * ENABLE, 1 DISABLE, 2 DESC, 3 reserved) and `off_wrap`; absent or null: zero (ENABLE). The
   * driver sleeps until notified: every flush must notify exactly when it asks.
   */
  drvEvent: z.strictObject({
    flags: z.number().int().min(0).max(3),
    offWrap: z.number().int().min(0).max(0xffff),
  }).nullable().optional(),
  policy: chainPolicySchema,
  preroll: z.number().int().min(0).max(15),
  hold: z.boolean(),
  /** When the ring runs dry, offer one more descriptor at the device's position (overruns held slots). */
  reoffer: z.boolean(),
  chains: z.array(chainSchema).max(12),
  corruption: z.union([
    z.null(),
    z.strictObject({
      desc: z.number().int().min(0),
      field: z.enum(["flags", "len", "addr", "id", "avail"]),
      value: z.string().regex(/^[0-9]+$/),
    }),
  ]),
  raw: z.array(z.strictObject({
    offset: z.number().int().min(0).max(0x2000),
    bytes: z.array(z.number().int().min(0).max(255)).max(32),
  })).max(4),
});

/** One input of the hostile-driver target (JSON-safe). */
export type PackedHostileDriverInput = z.infer<typeof inputSchema>;

/** zod schema of {@link PackedHostileDriverInput} (the device campaign's corpus files embed it). */
export const packedHostileDriverInputSchema: z.ZodType<PackedHostileDriverInput> = inputSchema;

const interestingAddr = [
  0n,
  BigInt(MEM - 8),
  BigInt(MEM),
  BigInt(RING),
  BigInt(TABLES),
  2n ** 52n,
  2n ** 63n,
  2n ** 64n - 8n,
  2n ** 64n - 1n,
];

/** The synthetic inputs of the target (without activation and real-ring seeds), for the device campaign. */
export function packedHostileDriverInputArbitrary(): fc.Arbitrary<PackedHostileDriverInput> {
  return arbitrary();
}

function arbitrary(): fc.Arbitrary<PackedHostileDriverInput> {
  const len = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 0x100 }) },
    { weight: 1, arbitrary: fc.constant(0) },
  );
  const chain = fc.record({
    readable: fc.array(len, { maxLength: 3 }),
    writable: fc.array(len, { maxLength: 3 }),
    indirect: fc.boolean(),
    id: fc.integer({ min: 0, max: 0xffff }),
  }, { noNullPrototype: true });
  const value = fc.oneof(
    fc.constantFrom(...interestingAddr).map(String),
    fc.integer({ min: 0, max: 0xffff }).map(String),
    fc.constantFrom(
      0,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      0x10,
      0x80,
      0x8000,
      0x8080,
      16,
      24,
      0x1_0000,
      0xffff_ffff,
      0x8000_0000,
      // Indirect table lengths at the boundaries: 2 entries, 17 entries (one past the largest
      // Queue Size drawn), 256 entries, one byte short / over a whole entry.
      0x20,
      0x110,
      0x1000,
      15,
      17,
    )
      .map(String),
  );
  return fc.record({
    size: fc.integer({ min: 1, max: 16 }),
    indirect: fc.boolean(),
    inOrder: fc.boolean(),
    eventIdx: fc.boolean(),
    drvEvent: fc.option(
      fc.record({
        flags: fc.nat(3),
        offWrap: fc.oneof(
          fc.tuple(fc.nat(17), fc.nat(1)).map(([off, w]) => off | (w << 15)),
          fc.nat(0xffff),
        ),
      }, { noNullPrototype: true }),
      { nil: null, freq: 2 },
    ),
    policy: chainPolicyArbitrary([1, 3, 65536, 65536, 65536, 65536]),
    preroll: fc.integer({ min: 0, max: 15 }),
    hold: fc.boolean(),
    reoffer: fc.boolean(),
    chains: fc.array(chain, { minLength: 1, maxLength: 8 }),
    corruption: fc.option(
      fc.record({
        desc: fc.nat({ max: 40 }),
        field: fc.constantFrom(
          "flags" as const,
          "len" as const,
          "addr" as const,
          "id" as const,
          "avail" as const,
        ),
        value,
      }, { noNullPrototype: true }),
      { nil: null, freq: 3 },
    ),
    raw: fc.array(
      fc.record({
        offset: fc.nat({ max: 0x2000 }),
        bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 16 }),
      }, { noNullPrototype: true }),
      { maxLength: 1 },
    ),
  }, { noNullPrototype: true });
}

/**
 * Whether a flush that moved the device's used position by `count` slots to `off` / `wrap` must
 * notify the driver (§2.8.10, written apart from the engine, after QEMU
 * `vring_packed_need_event`): DISABLE no; DESC (with EVENT_IDX) when the event offset, moved
 * back by the ring size when its wrap bit is not the device's, lies in [old, new); otherwise
 * (ENABLE, DESC without EVENT_IDX, reserved 3) yes.
 */
function packedFlushNeeded(
  flags: number,
  offWrap: number,
  eventIdx: boolean,
  off: number,
  wrap: number,
  count: number,
  size: number,
): boolean {
  // §2.8.10: flags is a 2-bit field, the 14 bits above it are reserved.
  const f = flags & 3;
  if (f === 1) return false;
  if (f !== 2 || !eventIdx) return true;
  let ev = offWrap & 0x7fff;
  if (offWrap >>> 15 !== wrap) ev -= size;
  return ((off - ev - 1) & 0xffff) < (count & 0xffff);
}

function segmentsOf(c: Chain, write: boolean): [number, number][] {
  const out: [number, number][] = [];
  const n = write ? c.writableCount : c.readableCount;
  for (let i = 0; i < n; i++) {
    out.push(write ? [c.writableGpa[i], c.writableLen[i]] : [c.readableGpa[i], c.readableLen[i]]);
  }
  return out;
}

/** Exact equality of two segment lists. */
function same(a: [number, number][], b: [number, number][]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Writes the input's valid lists from `pos` / `wrap` (our own raw writer, head flags last), its
 * one targeted corruption and its raw bytes. `ringSize` wraps the ring, `limit` caps the slots the
 * lists take (the target passes the Queue Size twice; the device campaign a larger ring, leaving
 * room for its probe).
 * @returns the GPA of every descriptor written and where the next list would go.
 */
function writeLists(
  memory: PackedHostileMemory,
  ring: PackedRingBuilder,
  input: PackedHostileDriverInput,
  policy: ChainPolicy,
  pos: number,
  wrap: number,
  ringSize: number,
  limit: number,
  seg0 = 0,
): { written: number[]; next: number; nextWrap: number } {
  const size = ringSize;
  // Valid lists, written by our own raw writer (head flags last).
  const written: number[] = []; // GPA of every descriptor written (ring and tables)
  let p = pos, w = wrap, used = 0, seg = seg0, table = 0;
  for (const ch of input.chains) {
    const lens = [...ch.readable.map((l) => [l, 0]), ...ch.writable.map((l) => [l, 2])].map((
      [l, f],
    ) => ({ l: l || (policy.zeroLength === "allow" ? 0 : 1), f }));
    if (lens.length === 0) continue;
    const indirect = ch.indirect && input.indirect;
    const slots = indirect ? 1 : lens.length;
    if (used + slots > limit || seg - seg0 + lens.length > 96) break;
    const descs = lens.map(({ l, f }) => ({ addr: BigInt(BUFS + 0x100 * seg++), len: l, f }));
    if (indirect) {
      const t = TABLES + 0x200 * table++;
      // A packed indirect table entry has the packed descriptor's layout (§2.8.7).
      const tableRing = new PackedRingBuilder(memory, t, descs.length);
      descs.forEach((d, i) => {
        tableRing.write(i, { addr: d.addr, len: d.len, id: 0, flags: d.f });
        written.push(t + 16 * i);
      });
      written.push(RING + 16 * p);
      ring.write(p, {
        addr: BigInt(t),
        len: 16 * descs.length,
        id: ch.id,
        flags: 4 | packedAvailFlags(w),
      });
      if (++p === size) {
        p = 0;
        w ^= 1;
      }
    } else {
      const slotsOf: number[] = [];
      descs.forEach((d, i) => {
        slotsOf.push(p);
        written.push(RING + 16 * p);
        ring.write(p, {
          addr: d.addr,
          len: d.len,
          id: ch.id,
          flags: d.f | (i < descs.length - 1 ? 1 : 0) | packedAvailFlags(w),
        });
        if (++p === size) {
          p = 0;
          w ^= 1;
        }
      });
    }
    used += slots;
  }
  // One targeted corruption.
  const cor = input.corruption;
  if (cor !== null && written.length > 0) {
    const at = written[cor.desc % written.length];
    const v = BigInt(cor.value);
    switch (cor.field) {
      case "flags":
        memory.writeU16(at + 14, memory.readU16(at + 14) ^ Number(v & 0xffffn));
        break;
      case "len":
        memory.writeU32(at + 8, Number(v & 0xffff_ffffn));
        break;
      case "addr":
        memory.writeU64(at, v & (2n ** 64n - 1n));
        break;
      case "id":
        memory.writeU16(at + 12, Number(v & 0xffffn));
        break;
      case "avail": {
        const f = memory.readU16(at + 14) & 0x7f7f;
        const b = Number(v & 3n);
        memory.writeU16(at + 14, f | (b & 1 ? 0x80 : 0) | (b & 2 ? 0x8000 : 0));
        break;
      }
    }
  }
  for (const r of input.raw) {
    const start = RING + r.offset;
    for (let i = 0; i < r.bytes.length && start + i < BUFS; i++) {
      memory.writeU8(start + i, r.bytes[i]);
    }
  }
  return { written, next: p, nextWrap: w };
}

/**
 * The memory of every synthetic run, reused (`scratch_memory.ts`): rings, tables and raw bytes
 * lie below `BUFS`; payload copies are noted through the observer.
 */
export const packedHostileDriverScratch = new ScratchMemory([
  { gpa: 0, size: SPLITS[0] },
  { gpa: SPLITS[0], size: SPLITS[1] - SPLITS[0] },
  { gpa: SPLITS[1], size: MEM - SPLITS[1] },
], BUFS);

type PackedHostileMemory = typeof packedHostileDriverScratch.memory;

function run(input: PackedHostileDriverInput): void {
  try {
    runOn(input);
  } finally {
    packedHostileDriverScratch.clean();
  }
}

/** Chains the device popped or rejected, over every run in this process (`workDone`). */
let chainsDone = 0;

/** State shared by the phases of one run: the device, the ring and the device's position. */
interface RunContext {
  input: PackedHostileDriverInput;
  size: number;
  memory: PackedHostileMemory;
  ring: PackedRingBuilder;
  policy: ChainPolicy;
  dev: PackedDeviceQueue;
  /** The driver event suppression structure. */
  drvEv: number;
  /** The device's next available position (offset, wrap counter). */
  pos: number;
  wrap: number;
  /** Ring slots the device holds. */
  outstanding: number;
  reoffer: boolean;
  /** Guest memory accesses of the current pop. */
  accesses: [number, number][];
}

/** Builds the device over the scratch memory and the context every phase shares. */
function setUp(input: PackedHostileDriverInput): RunContext {
  const size = input.size;
  const memory = packedHostileDriverScratch.memory;
  const ring = new PackedRingBuilder(memory, RING, size);
  const policy: ChainPolicy = { ...DEFAULT_CHAIN_POLICY, ...input.policy };
  const features = (input.indirect ? featureMask(VIRTIO_F_INDIRECT_DESC) : 0n) |
    (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n) |
    (input.eventIdx ? featureMask(VIRTIO_F_EVENT_IDX) : 0n);
  const dev = new PackedDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size,
    addresses: { descAddr: RING, driverAddr: RING + 16 * size, deviceAddr: RING + 16 * size + 4 },
    features,
    policy,
  });
  return {
    input,
    size,
    memory,
    ring,
    policy,
    dev,
    drvEv: RING + 16 * size,
    pos: 0,
    wrap: 1,
    outstanding: 0,
    reoffer: input.reoffer,
    accesses: [],
  };
}

/** Pre-roll: move both positions forward with single-descriptor buffers. */
function preroll(ctx: RunContext): void {
  const { ring, dev, size } = ctx;
  const preroll = ctx.input.preroll % size;
  for (let i = 0; i < preroll; i++) {
    ring.write(ctx.pos, { addr: BigInt(BUFS), len: 16, id: i, flags: packedAvailFlags(ctx.wrap) });
    if (i === 0 && !ctx.input.eventIdx) checkSetNotifications(dev);
    const c = dev.pop();
    if (c === null || c.id !== i) {
      throw new OracleFailure("preroll", `pre-roll buffer ${i} not popped`);
    }
    dev.push(c, 0);
    dev.flush();
    if (++ctx.pos === size) {
      ctx.pos = 0;
      ctx.wrap ^= 1;
    }
  }
}

/**
 * Oracle `set-notifications` (§2.8.10, Linux `vhost_enable_notify`): with a buffer available at
 * the device's position, re-enabling notifications returns true (the caller must poll again, or
 * sleeps forever on a buffer it was never told about) and disabling returns false. Without
 * EVENT_IDX the device event structure ends as it started (flags ENABLE).
 */
function checkSetNotifications(dev: PackedDeviceQueue): void {
  const off = dev.setNotifications(false), on = dev.setNotifications(true);
  if (off || !on) {
    throw new OracleFailure(
      "set-notifications",
      `a buffer is available: setNotifications(false) = ${off}, setNotifications(true) = ${on}`,
    );
  }
}

/** Flushes; `o` is the used position before the pushes (push moves it, flush publishes). */
function checkFlush(ctx: RunContext, o: { offset: number; wrap: number }): void {
  const { dev, memory, drvEv, size } = ctx;
  const notify = dev.flush();
  const n = dev.usedPosition;
  const count = n.offset - o.offset + (n.wrap !== o.wrap ? size : 0);
  if (count === 0 || dev.broken !== null) return;
  const need = packedFlushNeeded(
    memory.readU16(drvEv + 2),
    memory.readU16(drvEv),
    !!ctx.input.eventIdx,
    n.offset,
    n.wrap,
    count,
    size,
  );
  if (need && !notify) {
    throw new OracleFailure("lost-notification", `flush of ${count} slots: asked, no notify`);
  }
  if (!need && notify) {
    throw new OracleFailure("notification-decision", `flush of ${count} slots: unasked notify`);
  }
}

/** The device refused with `e`: the reference must see an error with that code; then broken. */
function checkPopError(ctx: RunContext, e: unknown, ref: ReturnType<typeof refDecode>): void {
  const { dev } = ctx;
  chainsDone++;
  if (!isVirtqError(e)) throw new OracleFailure("uncatalogued-throw", String(e), e);
  if (ref.kind !== "error") {
    throw new OracleFailure(
      "unexpected-error",
      `${e.code} where the reference sees ${ref.kind}`,
    );
  }
  if (!ref.codes.has(e.code)) {
    throw new OracleFailure("wrong-code", `${e.code}, reference: ${[...ref.codes].join(",")}`);
  }
  if (dev.broken !== e) throw new OracleFailure("not-broken", "queue not broken after error");
  if (dev.pop() !== null) throw new OracleFailure("pop-after-broken", "pop while broken");
}

/** The device popped `chain`: it must be the reference's, read within the named bytes. */
function checkChain(ctx: RunContext, chain: Chain, ref: ReturnType<typeof refDecode>): number {
  if (ref.kind !== "chain") {
    throw new OracleFailure("phantom-chain", `device popped a chain, reference: ${ref.kind}`);
  }
  chainsDone++;
  const r = segmentsOf(chain, false), wr = segmentsOf(chain, true);
  if (
    chain.id !== ref.id || chain.ringDescriptors !== ref.slots || !same(r, ref.readable) ||
    !same(wr, ref.writable)
  ) {
    throw new OracleFailure(
      "chain-mismatch",
      `device id ${chain.id} slots ${chain.ringDescriptors} r ${JSON.stringify(r)} w ${
        JSON.stringify(wr)
      }; reference ${JSON.stringify(ref)}`,
    );
  }
  const written2 = chain.copyReadableToWritable();
  for (const [g, n] of ctx.accesses) {
    if (!ref.named.some(([a, l]) => g >= a && g + n <= a + l)) {
      throw new OracleFailure("out-of-bounds-access", `${n} bytes at ${g} not named by the list`);
    }
  }
  return written2;
}

/** The device holds, or pushes and flushes, the chain, then moves past its slots. */
function complete(ctx: RunContext, chain: Chain, written: number, slots: number): void {
  const { input, dev, size } = ctx;
  if (input.hold || input.inOrder) {
    ctx.outstanding += chain.ringDescriptors;
    if (!input.hold) {
      const o = dev.usedPosition;
      dev.push(chain, written);
      checkFlush(ctx, o);
      ctx.outstanding -= chain.ringDescriptors;
    }
  } else {
    const o = dev.usedPosition;
    dev.push(chain, written);
    checkFlush(ctx, o);
  }
  ctx.pos += slots;
  if (ctx.pos >= size) {
    ctx.pos -= size;
    ctx.wrap ^= 1;
  }
}

/** One pop checked against the reference decoder; false when the run is over. */
function popStep(ctx: RunContext): boolean {
  const { memory, size, input, policy, dev, ring } = ctx;
  const ref = refDecode({
    memory,
    memSize: MEM,
    ringGpa: RING,
    size,
    pos: ctx.pos,
    wrap: ctx.wrap,
    outstandingSlots: ctx.outstanding,
    indirect: input.indirect,
    policy,
    splits: SPLITS,
  });
  ctx.accesses.length = 0;
  let chain: Chain | null;
  try {
    chain = dev.pop();
  } catch (e) {
    checkPopError(ctx, e, ref);
    return false;
  }
  if (chain === null && ref.kind === "none" && ctx.reoffer) {
    // A well-formed descriptor at the device's position in the current lap: fine if its slot
    // is free, HEAD_IN_USE if the device still holds every slot.
    ctx.reoffer = false;
    ring.write(ctx.pos, { addr: BigInt(BUFS), len: 8, id: 0, flags: packedAvailFlags(ctx.wrap) });
    return true;
  }
  if (chain === null) {
    if (ref.kind !== "none") {
      throw new OracleFailure(
        "missed",
        `device saw nothing, reference: ${
          JSON.stringify(ref, (_k, v) => v instanceof Set ? [...v] : v)
        }`,
      );
    }
    return false;
  }
  const written = checkChain(ctx, chain, ref);
  complete(ctx, chain, written, ref.kind === "chain" ? ref.slots : 0);
  return true;
}

function runOn(input: PackedHostileDriverInput): void {
  const ctx = setUp(input);
  const { memory, size } = ctx;
  preroll(ctx);
  // The driver's event suppression structure (after the pre-roll, whose flushes ignore it).
  if (input.drvEvent != null) {
    memory.writeU16(ctx.drvEv, input.drvEvent.offWrap);
    memory.writeU16(ctx.drvEv + 2, input.drvEvent.flags);
  }
  writeLists(memory, ctx.ring, input, ctx.policy, ctx.pos, ctx.wrap, size, size, SEG0);
  // Pop until nothing is available or the device refuses; bounded by the Queue Size.
  memory.observer = {
    onRead: (g, n) => ctx.accesses.push([g, n]),
    onWrite: (g, n) => {
      packedHostileDriverScratch.noteWrite(g, n);
      ctx.accesses.push([g, n]);
    },
  };
  for (let step = 0; step <= size + 2; step++) {
    if (!popStep(ctx)) return checkQuietWhenInactive(ctx);
  }
  throw new OracleFailure("no-termination", `more than ${size + 2} pops`);
}

/**
 * Oracle `set-notifications` on an inactive queue (§2.1.2, §2.8.10): a broken queue (when the
 * run broke it), then the same queue reset and not re-activated, must answer
 * `setNotifications(false)` and `(true)` with false and leave the device event suppression
 * structure as it was (a device that needs a reset, or was reset, writes nothing to the rings).
 */
function checkQuietWhenInactive(ctx: RunContext): void {
  const { dev, memory } = ctx;
  const devEv = ctx.drvEv + 4;
  for (const state of dev.broken !== null ? ["broken", "reset"] : ["reset"]) {
    if (state === "reset") dev.reset();
    const before = memory.readU32(devEv);
    for (const on of [false, true]) {
      const r = dev.setNotifications(on);
      const now = memory.readU32(devEv);
      if (r || now !== before) {
        throw new OracleFailure(
          "set-notifications",
          `${state} queue: setNotifications(${on}) = ${r}, device event structure ` +
            `0x${before.toString(16)} -> 0x${now.toString(16)}`,
        );
      }
    }
  }
}

/** The packed hostile-driver target (plus real Linux rings with one corruption, `fuzz/support/real_ring_seeds.ts`). */
export const packedHostileDriver: FuzzTarget<
  PackedHostileDriverInput | ActivationOnlyInput | RealRingInput
> = withRealRingSeeds(
  withActivation<PackedHostileDriverInput>(
    {
      name: "packed-hostile-driver",
      description: "hostile driver vs packed device: valid lists + one corruption + raw bytes",
      arbitrary,
      run,
      describe: (input) => {
        // the ring as the failing run left it, decoded by the inspector
        try {
          try {
            runOn(input);
          } catch { /* the failure itself is printed by --replay */ }
          const size = input.size;
          return describeRing(packedHostileDriverScratch.memory, {
            layout: "packed",
            size,
            features: (1n << 34n) | // VIRTIO_F_RING_PACKED
              (input.indirect ? featureMask(VIRTIO_F_INDIRECT_DESC) : 0n) |
              (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n),
            desc: RING,
            driver: RING + 16 * size,
            device: RING + 16 * size + 4,
          }, MEM);
        } finally {
          packedHostileDriverScratch.clean();
        }
      },
      workUnit: "chains",
      workDone: () => chainsDone,
      encode: (i) => i,
      decode: (json) => inputSchema.parse(json),
    },
    "packed",
    packedHostileDriverScratch.memory,
  ),
  "packed",
);

/** Memory map of the ring image {@link packedHostileImage} returns (byte offsets from 0). */
export const PACKED_HOSTILE_MAP = { ring: RING, tables: TABLES, data: BUFS, end: MEM } as const;

/**
 * The ring image one input builds for the device campaign (`fuzz/device/`), which relocates it
 * into a real back-end's guest memory: the descriptor ring at {@link PACKED_HOSTILE_MAP}`.ring`
 * with `ringSize` slots, the driver event suppression structure after it (§2.8.10), the indirect
 * tables, all of it in bytes `[0, PACKED_HOSTILE_MAP.data)`; descriptor addresses are
 * image-relative. The lists start at slot `input.preroll % input.size` with wrap counter 1 (the
 * device's position, SET_VRING_BASE) and take at most `input.size` slots.
 * @param ringSize slots of the ring (default `input.size`; at most 256).
 * @returns the bytes, the features the input negotiates, the device's start slot and the slot /
 * wrap counter the next list would use.
 */
export function packedHostileImage(
  input: PackedHostileDriverInput,
  ringSize: number = input.size,
): { bytes: Uint8Array; features: bigint; start: number; next: number; nextWrap: number } {
  const memory = packedHostileDriverScratch.memory;
  try {
    const ring = new PackedRingBuilder(memory, RING, ringSize);
    const policy: ChainPolicy = { ...DEFAULT_CHAIN_POLICY, ...input.policy };
    const features = (input.indirect ? featureMask(VIRTIO_F_INDIRECT_DESC) : 0n) |
      (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n) |
      (input.eventIdx ? featureMask(VIRTIO_F_EVENT_IDX) : 0n);
    const start = input.preroll % input.size;
    if (input.drvEvent != null) {
      memory.writeU16(RING + 16 * ringSize, input.drvEvent.offWrap);
      memory.writeU16(RING + 16 * ringSize + 2, input.drvEvent.flags);
    }
    const r = writeLists(memory, ring, input, policy, start, 1, ringSize, input.size);
    const bytes = new Uint8Array(BUFS);
    memory.read(0, bytes);
    return { bytes, features, start, next: r.next, nextWrap: r.nextWrap };
  } finally {
    packedHostileDriverScratch.clean();
  }
}
