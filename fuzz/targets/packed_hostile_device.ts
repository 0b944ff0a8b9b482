/**
 * Fuzz target `packed-hostile-device`: a hostile device against the packed driver
 * (`PackedDriverQueue`). The driver adds and publishes buffers; the target pops them with the
 * packed device to learn their buffer IDs and sizes, then writes used descriptors itself, in any
 * order, with one optional corruption each (buffer ID, flags/wrap, length, slot).
 *
 * Oracles: each `getUsed` returns exactly what a simple model of the driver's rules expects
 * (token and length, "not used yet", or the catalogued driver-side error); nothing else is thrown;
 * a token never comes back twice; after an error the queue is broken and `getUsed` returns
 * `undefined`; every streaming DMA mapping is unmapped exactly once (never one that is not live);
 * the loop is bounded. When the input draws a `busShift`, the driver's DMA API hands out bus =
 * GPA + shift (inside the range of guest memory's GPAs) and the device translates back: each
 * popped chain must have exactly the GPAs and lengths the driver added (`pop-segments`), so a
 * device that takes a bus address for a GPA is caught.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { GuestMemory, type U64 } from "../../src/memory/mod.ts";
import {
  type DmaAccess,
  type DmaApi,
  type DmaDirection,
  type DmaTranslation,
  IdentityAddressSpace,
  RawGpaDmaApi,
} from "../../src/dma/mod.ts";
import {
  type Chain,
  createDriverQueue,
  driverQueueFootprint,
  featureMask,
  isVirtqError,
  PACKED_DRIVER_INDIRECT_MAX,
  PackedDeviceQueue,
  PackedDriverQueue,
  type RingLayout,
  SgList,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
} from "../../src/virtio/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import { PackedRingBuilder, packedUsedFlags } from "../../src/virtio/mod.ts";

const MEM = 0x40000;
const RING = 0x1000;
const BUFS = 0x20000;

const inputSchema = z.strictObject({
  size: z.number().int().min(1).max(16),
  inOrder: z.boolean(),
  indirect: z.boolean(),
  clamp: z.boolean(),
  /** Negotiate `VIRTIO_F_EVENT_IDX` (absent in older corpus entries: no). */
  eventIdx: z.boolean().optional(),
  /**
   * Before the driver's first kick, the device's event suppression structure (§2.8.10): flags
   * (0 ENABLE, 1 DISABLE, 2 DESC, 3 reserved) and `off_wrap`; absent or null: as initialised.
   * The device sleeps until notified: the kick must notify exactly when these ask.
   */
  devEvent: z.strictObject({
    flags: z.number().int().min(0).max(3),
    offWrap: z.number().int().min(0).max(0xffff),
  }).nullable().optional(),
  /** After its pops, the device enables (true) or disables (false) notifications (absent: no). */
  devNotify: z.boolean().nullable().optional(),
  /** The n-th streaming `dma.map` (0-based) fails (absent or null: none). */
  mapFailAt: z.number().int().min(0).nullable().optional(),
  /** A bad queue configuration handed to the factory instead of a run (absent or null: none). */
  badConfig: z.enum(["size0", "size-big", "misaligned", "unmapped", "map-fail", "layout"])
    .nullable().optional(),
  /**
   * The driver's DMA API hands out bus = GPA + busShift, the device's view subtracts it (absent
   * or null: raw GPAs and the identity view). Bus and GPA ranges overlap: a bus address used as
   * a GPA reaches the wrong bytes.
   */
  busShift: z.number().int().min(1).max(0x1000).nullable().optional(),
  /** Driver indirect policy (absent: the default, `"auto"`). */
  indirectPolicy: z.enum(["never", "always", "auto"]).optional(),
  buffers: z.array(z.strictObject({
    readable: z.array(z.number().int().min(0).max(0x100)).max(4),
    writable: z.array(z.number().int().min(0).max(0x100)).max(4),
  })).max(16),
  unpublished: z.boolean(),
  completions: z.array(z.strictObject({
    pick: z.number().int().min(0),
    /** Written length; the honest device reports at most the buffer's capacity. */
    len: z.number().int().min(0).max(0xffff_ffff),
    corrupt: z.union([
      z.null(),
      z.strictObject({
        field: z.enum(["id", "flags", "len", "slot", "nowrite"]),
        value: z.number().int().min(0).max(0xffff_ffff),
      }),
    ]),
    /** Before draining: enableCallbacks (true), disableCallbacks (false) or neither. */
    callbacks: z.boolean().nullable().optional(),
  })).max(24),
});

/** One input of the hostile-device target (JSON-safe). */
export type PackedHostileDeviceInput = z.infer<typeof inputSchema>;

/**
 * Whether the driver's first kick, after publishing `slots` ring slots from slot 0 / wrap 1, must
 * notify the device (§2.8.10, written apart from the engine, after Linux
 * `virtqueue_kick_prepare_packed`): DISABLE no; DESC (with EVENT_IDX) when the event offset,
 * moved back by the ring size when its wrap bit is not the driver's, lies in [old, new);
 * otherwise (ENABLE, DESC without EVENT_IDX, reserved 3) yes.
 */
function packedKickNeeded(
  flags: number,
  offWrap: number,
  eventIdx: boolean,
  slots: number,
  size: number,
): boolean {
  // §2.8.10: flags is a 2-bit field, the 14 bits above it are reserved.
  const f = flags & 3;
  if (f === 1) return false;
  if (f !== 2 || !eventIdx) return true;
  const nw = slots % size, wrap = slots >= size ? 0 : 1;
  let ev = offWrap & 0x7fff;
  if (offWrap >>> 15 !== wrap) ev -= size;
  return ((nw - ev - 1) & 0xffff) < (slots & 0xffff);
}

function arbitrary(): fc.Arbitrary<PackedHostileDeviceInput> {
  const lens = (min: number) =>
    fc.array(
      fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 1, max: 0x100 }) }, fc.constant(0)),
      {
        minLength: min,
        maxLength: 3,
      },
    );
  return fc.record({
    size: fc.integer({ min: 1, max: 16 }),
    inOrder: fc.boolean(),
    indirect: fc.boolean(),
    clamp: fc.boolean(),
    eventIdx: fc.boolean(),
    devEvent: fc.option(
      fc.record({
        flags: fc.nat(3),
        offWrap: fc.oneof(
          fc.tuple(fc.nat(17), fc.nat(1)).map(([off, w]) => off | (w << 15)),
          fc.nat(0xffff),
        ),
      }, { noNullPrototype: true }),
      { nil: null, freq: 2 },
    ),
    devNotify: fc.option(fc.boolean(), { nil: null, freq: 2 }),
    mapFailAt: fc.option(fc.nat({ max: 24 }), { nil: null, freq: 4 }),
    badConfig: fc.oneof(
      // one input in 20 (fc.option's freq is the odds of the nil value: freq 20 made it 19 in 20)
      { weight: 19, arbitrary: fc.constant(null) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          "size0" as const,
          "size-big" as const,
          "misaligned" as const,
          "unmapped" as const,
          "map-fail" as const,
          "layout" as const,
        ),
      },
    ),
    busShift: fc.constantFrom(null, null, null, 0x40, 0x1000),
    indirectPolicy: fc.constantFrom("never" as const, "always" as const, "auto" as const),
    buffers: fc.array(
      fc.record({ readable: lens(0), writable: lens(0) }, { noNullPrototype: true }),
      { minLength: 1, maxLength: 10 },
    ),
    unpublished: fc.boolean(),
    completions: fc.array(
      fc.record({
        pick: fc.nat({ max: 16 }),
        len: fc.oneof(fc.integer({ min: 0, max: 0x300 }), fc.constant(0xffff_ffff)),
        corrupt: fc.option(
          fc.record({
            field: fc.constantFrom(
              "id" as const,
              "flags" as const,
              "len" as const,
              "slot" as const,
              "nowrite" as const,
            ),
            value: fc.oneof(fc.nat({ max: 20 }), fc.constantFrom(0x80, 0x8000, 0x8080, 0xffff)),
          }, { noNullPrototype: true }),
          { nil: null, freq: 3 },
        ),
        callbacks: fc.option(fc.boolean(), { nil: null, freq: 2 }),
      }, { noNullPrototype: true }),
      { maxLength: 16 },
    ),
  }, { noNullPrototype: true });
}

/** A DMA API that checks every unmap matches a live mapping, over raw GPAs. */
class TrackingDma implements DmaApi {
  readonly name = "tracking";
  /** @param shift bus = GPA + shift for every mapping. */
  constructor(readonly shift = 0) {}
  readonly live = new Map<string, number>();
  readonly #inner = new RawGpaDmaApi();
  /** Streaming maps left before one fails (-1: never); `failed` once it did. */
  failIn = -1;
  failed = false;
  /** The coherent mapping of the ring fails. */
  failCoherent = false;
  #key(bus: U64, len: number, dir: number) {
    return `${bus}:${len}:${dir}`;
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    if (this.failIn >= 0 && this.failIn-- === 0) {
      this.failed = true;
      throw new Error(`planned map failure at GPA ${gpa}`);
    }
    const b = (this.#inner.map(gpa, length, dir) as number) + this.shift;
    const k = this.#key(b, length, dir);
    this.live.set(k, (this.live.get(k) ?? 0) + 1);
    return b;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    const k = this.#key(bus, length, dir);
    const n = this.live.get(k) ?? 0;
    if (n === 0) throw new OracleFailure("bad-unmap", `unmap of ${k}, not a live mapping`);
    if (n === 1) this.live.delete(k);
    else this.live.set(k, n - 1);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    if (this.failCoherent) throw new Error("planned coherent map failure");
    return (this.#inner.mapCoherent(gpa, length) as number) + this.shift;
  }
  unmapCoherent(): void {}
}

/** The device's view matching a shifted {@link TrackingDma}: GPA = bus - shift. */
class ShiftSpace extends IdentityAddressSpace {
  constructor(readonly shift: number) {
    super("shift");
  }
  override translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    super.translate(typeof bus === "number" ? bus - this.shift : bus, length, access, out);
  }
}

interface Buf {
  token: number;
  id: number;
  slots: number;
  cap: number;
  published: boolean;
}

/** §2.8 / §4.1.4.3: a bad configuration is refused with its catalogue code through the factory. */
function runBadConfig(input: PackedHostileDeviceInput, memory: GuestMemory, dma: TrackingDma) {
  const bad = input.badConfig!;
  let size = input.size, ringGpa = RING, layout: RingLayout = "packed";
  if (bad === "size0") size = 0;
  if (bad === "size-big") size = 32769;
  if (bad === "misaligned") ringGpa = RING + 8;
  if (bad === "unmapped") ringGpa = MEM - driverQueueFootprint("packed", size, 0n) + 16;
  if (bad === "map-fail") dma.failCoherent = true;
  if (bad === "layout") layout = "ring" as RingLayout;
  const want = {
    "size0": "QUEUE_SIZE_INVALID",
    "size-big": "QUEUE_SIZE_INVALID",
    "misaligned": "RING_MISALIGNED",
    "unmapped": "RING_UNMAPPED",
    "map-fail": "DMA_MAP_FAILED",
    "layout": "unknown ring layout",
  }[bad];
  let got = "no error";
  try {
    createDriverQueue(layout, { memory, dma, size, features: 0n, ringGpa });
  } catch (e) {
    got = isVirtqError(e) ? e.code : e instanceof Error ? e.message : String(e);
  }
  if (!got.startsWith(want)) {
    throw new OracleFailure("bad-config", `${bad}: factory threw ${got}, expected ${want}`);
  }
  if (dma.live.size !== 0) throw new OracleFailure("mapping-leak", `${bad}: mappings left`);
}

/** State shared by the phases of one `run`: the rings, the driver's adds and the driver model. */
interface RunContext {
  input: PackedHostileDeviceInput;
  size: number;
  memory: GuestMemory;
  dma: TrackingDma;
  policy: NonNullable<PackedHostileDeviceInput["indirectPolicy"]>;
  drv: PackedDriverQueue<number>;
  drvEv: number;
  ring: PackedRingBuilder;
  /** Writable capacity and segment count of each added token. */
  caps: number[];
  segs: number[];
  /** GPA and length of each readable, then each writable segment of each added token. */
  gpas: number[][];
  /** Next scratch segment slot. */
  seg: number;
  /** Adds refused with BUFFER_EMPTY / DMA_MAP_FAILED. */
  refused: number;
  tokens: number;
  byId: Map<number, Buf>;
  popped: Buf[];
  // Model of the driver's rules.
  lastUsed: number;
  usedWrap: number;
  broken: boolean;
  batchEnd: number;
  batchLen: number;
  fifo: number[];
  returned: Set<number>;
  devUsed: number;
  devWrap: number;
  pending: Buf[];
}

/** The driver adds one buffer; a refused add must leave nothing added or mapped. */
function addBuffer(
  ctx: RunContext,
  b: PackedHostileDeviceInput["buffers"][number],
  token: number,
): boolean {
  const { dma, drv } = ctx;
  if (b.readable.length + b.writable.length === 0) return false;
  const r = new SgList(), w = new SgList();
  for (const l of b.readable) r.push(BUFS + 0x100 * (ctx.seg++ % 128), l);
  for (const l of b.writable) w.push(BUFS + 0x100 * (ctx.seg++ % 128), l);
  const live = dma.live.size, free = drv.numFree, failedBefore = dma.failed;
  const zero = b.readable.includes(0) || b.writable.includes(0);
  try {
    drv.add(r, w, token);
  } catch (e) {
    if (isVirtqError(e, "RING_FULL")) return false;
    // A segment of length 0 (§2.8.4) or a failed mapping: refused, nothing added or left mapped.
    const mapFailed = dma.failed && !failedBefore;
    const want = mapFailed ? "DMA_MAP_FAILED" : zero ? "BUFFER_EMPTY" : null;
    if (!isVirtqError(e) || e.code !== want) {
      throw new OracleFailure("uncatalogued-throw", `add: ${e}, expected ${want}`, e);
    }
    if (dma.live.size !== live || drv.numFree !== free) {
      throw new OracleFailure(
        "add-rollback",
        `failed add (${e.code}) left ${dma.live.size - live} mappings, ${free - drv.numFree} slots`,
      );
    }
    ctx.refused++;
    return false;
  }
  if (zero || (dma.failed && !failedBefore)) {
    throw new OracleFailure("add-accepted", `add accepted a zero-length segment or failed map`);
  }
  ctx.caps[token] = w.totalBytes();
  ctx.segs[token] = r.count + w.count;
  const g: number[] = [];
  for (let i = 0; i < r.count; i++) g.push(r.gpa[i], r.len[i]);
  for (let i = 0; i < w.count; i++) g.push(w.gpa[i], w.len[i]);
  ctx.gpas[token] = g;
  return true;
}

/** Builds the driver queue and the context every later phase shares. */
function setUp(
  input: PackedHostileDeviceInput,
  memory: GuestMemory,
  dma: TrackingDma,
  features: bigint,
): RunContext {
  const size = input.size;
  const policy = input.indirectPolicy ?? "auto";
  const drv = new PackedDriverQueue<number>({
    memory,
    dma,
    size,
    features,
    ringGpa: RING,
    policy: { usedLenExceedsCapacity: input.clamp ? "clamp" : "reject", indirect: policy },
  });
  return {
    input,
    size,
    memory,
    dma,
    policy,
    drv,
    drvEv: RING + drv.ringLayout.driverEventOffset,
    ring: new PackedRingBuilder(memory, RING, size),
    caps: [],
    segs: [],
    gpas: [],
    seg: 0,
    refused: 0,
    tokens: 0,
    byId: new Map(),
    popped: [],
    lastUsed: 0,
    usedWrap: 1,
    broken: false,
    batchEnd: -1,
    batchLen: 0,
    fifo: [],
    returned: new Set(),
    devUsed: 0,
    devWrap: 1,
    pending: [],
  };
}

/** The driver adds what fits and publishes it; returns what the device asked and the kick. */
function addAndKick(ctx: RunContext): { askFlags: number; askOffWrap: number; notified: boolean } {
  const { input, dma, drv, memory } = ctx;
  dma.failIn = input.mapFailAt ?? -1;
  for (const b of input.buffers) if (addBuffer(ctx, b, ctx.tokens)) ctx.tokens++;
  dma.failIn = -1;
  const devEv = RING + drv.ringLayout.deviceEventOffset;
  if (input.devEvent != null) {
    memory.writeU16(devEv, input.devEvent.offWrap);
    memory.writeU16(devEv + 2, input.devEvent.flags);
  }
  const askFlags = memory.readU16(devEv + 2), askOffWrap = memory.readU16(devEv);
  const notified = drv.kick();
  return { askFlags, askOffWrap, notified };
}

/** Learn IDs and sizes the honest way: the device pops in ring order = add order. */
function popAll(ctx: RunContext, dev: PackedDeviceQueue): void {
  const { input, size, policy, caps, segs } = ctx;
  for (let t = 0; t < ctx.tokens; t++) {
    const c = dev.pop();
    if (c === null) throw new OracleFailure("driver-publish", `buffer ${t} not available`);
    if (c.writableBytes !== caps[t]) throw new OracleFailure("driver-publish", `capacity of ${t}`);
    checkSegments(c, ctx.gpas[t], t);
    // §2.8.7: the indirect policy decides; "never" and "always" leave no choice.
    const n = segs[t];
    const indirectFits = input.indirect && n >= 2 && n <= PACKED_DRIVER_INDIRECT_MAX && n <= size;
    const want = policy === "never" || (policy === "always" && !indirectFits)
      ? n
      : policy === "always"
      ? 1
      : c.ringDescriptors;
    if (c.ringDescriptors !== want || (c.ringDescriptors !== 1 && c.ringDescriptors !== n)) {
      throw new OracleFailure(
        "indirect-policy",
        `buffer ${t}: ${n} segments, ${c.ringDescriptors} ring descriptors, policy ${policy}`,
      );
    }
    const b = { token: t, id: c.id, slots: c.ringDescriptors, cap: caps[t], published: true };
    ctx.byId.set(c.id, b);
    ctx.popped.push(b);
  }
}

/** Oracle `pop-segments`: the popped chain has the GPAs and lengths the driver added. */
function checkSegments(c: Chain, want: readonly number[], t: number): void {
  let k = 0, ok = c.readableCount + c.writableCount === want.length / 2;
  for (let i = 0; ok && i < c.readableCount; i++, k += 2) {
    ok = c.readableGpa[i] === want[k] && c.readableLen[i] === want[k + 1];
  }
  for (let i = 0; ok && i < c.writableCount; i++, k += 2) {
    ok = c.writableGpa[i] === want[k] && c.writableLen[i] === want[k + 1];
  }
  if (!ok) {
    const got: number[] = [];
    for (let i = 0; i < c.readableCount; i++) got.push(c.readableGpa[i], c.readableLen[i]);
    for (let i = 0; i < c.writableCount; i++) got.push(c.writableGpa[i], c.writableLen[i]);
    throw new OracleFailure(
      "pop-segments",
      `buffer ${t}: the device popped (gpa, len) [${got}], the driver added [${want}]`,
    );
  }
}

/**
 * The device's positions after popping everything published (§2.8.1), and its event
 * suppression structure after setNotifications (§2.8.10): nothing more is available yet.
 */
function checkDeviceAfterPops(
  ctx: RunContext,
  dev: PackedDeviceQueue,
  kick: { askFlags: number; askOffWrap: number; notified: boolean },
): void {
  const { input, size, tokens, memory, drv } = ctx;
  const { askFlags, askOffWrap, notified } = kick;
  const slots = ctx.popped.reduce((n, b) => n + b.slots, 0);
  if (slots > 0) {
    const need = packedKickNeeded(
      askFlags,
      askOffWrap,
      !!input.eventIdx,
      slots,
      size,
    );
    if (need && !notified) {
      throw new OracleFailure("lost-notification", `kick of ${slots} slots: asked, not notified`);
    }
    if (!need && notified) {
      throw new OracleFailure("notification-decision", `kick of ${slots} slots: notified unasked`);
    }
  }
  const pos = dev.availPosition, upos = dev.usedPosition;
  if (
    !dev.ready || dev.inFlight !== tokens || pos.offset !== slots % size ||
    pos.wrap !== (Math.floor(slots / size) % 2 === 0 ? 1 : 0) || upos.offset !== 0 ||
    upos.wrap !== 1
  ) {
    throw new OracleFailure(
      "device-position",
      `after ${tokens} pops of ${slots} slots: ready ${dev.ready}, in flight ${dev.inFlight}, ` +
        `avail ${pos.offset}/${pos.wrap}, used ${upos.offset}/${upos.wrap}`,
    );
  }
  if (input.devNotify !== undefined && input.devNotify !== null) {
    const on = input.devNotify;
    const pending = dev.setNotifications(on);
    const devEv = RING + drv.ringLayout.deviceEventOffset;
    const offWrap = memory.readU16(devEv), flags = memory.readU16(devEv + 2);
    const wantFlags = !on ? 1 : input.eventIdx ? 2 : 0;
    // Known gap (not checked here yet): a refused add leaves the non-head descriptors it wrote
    // in the ring, flagged available, so `pending` can be true after one.
    if (
      (pending && ctx.refused === 0) || flags !== wantFlags ||
      (on && input.eventIdx && offWrap !== (pos.offset | (pos.wrap << 15)))
    ) {
      throw new OracleFailure(
        "device-notify",
        `setNotifications(${on}): pending ${pending}, flags ${flags}, off_wrap ${offWrap}`,
      );
    }
  }
}

/** The model's next expected used element: a token and length, a catalogue code, or nothing. */
function expectNext(ctx: RunContext): { token: number; len: number } | string | undefined {
  const { input, size, byId, ring } = ctx;
  if (ctx.broken) return undefined;
  const retire = (id: number, len: number) => {
    const b = byId.get(id)!;
    byId.delete(id);
    ctx.lastUsed += b.slots;
    if (ctx.lastUsed >= size) {
      ctx.lastUsed -= size;
      ctx.usedWrap ^= 1;
    }
    return { token: b.token, len };
  };
  if (ctx.batchEnd >= 0) {
    const id = ctx.fifo.shift()!;
    if (id === ctx.batchEnd) {
      ctx.batchEnd = -1;
      return retire(id, ctx.batchLen);
    }
    return retire(id, byId.get(id)!.cap);
  }
  const d = ring.read(ctx.lastUsed);
  const a = (d.flags >> 7) & 1, u = (d.flags >> 15) & 1;
  if (a !== u || u !== ctx.usedWrap) return undefined;
  let len = d.flags & 2 ? d.len : 0;
  if (d.id >= size) return "USED_ID_OUT_OF_RANGE";
  const b = byId.get(d.id);
  if (b === undefined || !b.published) return "USED_ID_NOT_HEAD";
  if (len > b.cap) {
    if (!input.clamp) return "USED_LEN_EXCEEDS_CAPACITY";
    len = b.cap;
  }
  if (input.inOrder) {
    ctx.batchEnd = d.id;
    ctx.batchLen = len;
    return expectNext(ctx);
  }
  return retire(d.id, len);
}

/** §2.8: after an error the driver is broken and a broken queue takes no new buffers. */
function checkBroken(ctx: RunContext, e: unknown, want: unknown): void {
  const { drv } = ctx;
  if (!isVirtqError(e)) throw new OracleFailure("uncatalogued-throw", String(e), e);
  if (e.code !== want) {
    throw new OracleFailure(
      "wrong-error",
      `${e.code}, model expects ${JSON.stringify(want)}`,
    );
  }
  if (drv.broken !== e || drv.getUsed() !== undefined) {
    throw new OracleFailure("not-broken", "driver not broken after error");
  }
  ctx.broken = true;
  const one = new SgList();
  one.push(BUFS, 1);
  let code = "accepted";
  try {
    drv.add(one, new SgList(), -1);
  } catch (e2) {
    code = isVirtqError(e2) ? e2.code : String(e2);
  }
  if (code !== "QUEUE_BROKEN") {
    throw new OracleFailure("not-broken", `add on a broken queue: ${code}`);
  }
}

/** The driver takes used elements until none is left; each must match the model. */
function drain(ctx: RunContext): void {
  const { size, drv, returned } = ctx;
  for (let i = 0; i <= size + 1; i++) {
    const want = expectNext(ctx);
    let got: number | undefined;
    try {
      got = drv.getUsed();
      if (got !== undefined) chainsDone++;
    } catch (e) {
      chainsDone++;
      checkBroken(ctx, e, want);
      return;
    }
    if (typeof want === "string") {
      throw new OracleFailure(
        "missed-violation",
        `model expects ${want}, driver returned ${got}`,
      );
    }
    if (want === undefined) {
      if (got !== undefined) throw new OracleFailure("phantom-used", `driver returned ${got}`);
      return;
    }
    if (got !== want.token || drv.usedLen !== want.len) {
      throw new OracleFailure(
        "used-mismatch",
        `driver ${got}/${drv.usedLen}, model ${want.token}/${want.len}`,
      );
    }
    if (returned.has(got)) throw new OracleFailure("token-twice", `token ${got}`);
    returned.add(got);
  }
  throw new OracleFailure("no-termination", "getUsed loop did not end");
}

/**
 * §2.8.10: the driver event suppression structure says what the driver asked for: DISABLE, or
 * ENABLE without EVENT_IDX, or DESC at its used position (off | wrap << 15) with it.
 * enableCallbacks reports false when a used buffer is already pending.
 */
function checkCallbacks(ctx: RunContext, enable: boolean): void {
  const { input, drv, memory, drvEv, ring } = ctx;
  let clear: boolean | undefined;
  if (enable) clear = drv.enableCallbacks();
  else drv.disableCallbacks();
  const offWrap = memory.readU16(drvEv), flags = memory.readU16(drvEv + 2);
  const wantFlags = !enable ? 1 : input.eventIdx ? 2 : 0;
  const wantOffWrap = ctx.lastUsed | (ctx.usedWrap << 15);
  if (flags !== wantFlags || (enable && input.eventIdx && offWrap !== wantOffWrap)) {
    throw new OracleFailure(
      "callbacks",
      `${enable ? "enable" : "disable"}Callbacks (event idx ${!!input.eventIdx}): flags ` +
        `${flags}, off_wrap ${offWrap}, model wants ${wantFlags}/${wantOffWrap}`,
    );
  }
  if (clear !== undefined) {
    const d = ring.read(ctx.lastUsed);
    const a = (d.flags >> 7) & 1, u = (d.flags >> 15) & 1;
    const pending = ctx.batchEnd >= 0 || (a === u && u === ctx.usedWrap);
    if (clear === pending) {
      throw new OracleFailure("callbacks", `enableCallbacks ${clear}, model pending ${pending}`);
    }
  }
}

/** The hostile device completes buffers in any order, writing used descriptors itself. */
function completeHostile(ctx: RunContext): void {
  const { input, size, ring, pending } = ctx;
  for (const c of input.completions) {
    if (pending.length === 0 || ctx.broken) break;
    const b = pending.splice(c.pick % pending.length, 1)[0];
    let slot = ctx.devUsed;
    let id = b.id, len = Math.min(c.len, b.cap), flags = packedUsedFlags(ctx.devWrap) | 2;
    const cor = c.corrupt;
    if (cor !== null) {
      if (cor.field === "id") id = cor.value & 0xffff;
      if (cor.field === "flags") flags ^= cor.value & 0xffff;
      if (cor.field === "len") len = cor.value + c.len;
      if (cor.field === "slot") slot = (slot + cor.value) % size;
      if (cor.field === "nowrite") flags &= ~2;
    }
    ring.write(slot, { addr: 0n, len, id, flags });
    ctx.devUsed += b.slots;
    if (ctx.devUsed >= size) {
      ctx.devUsed -= size;
      ctx.devWrap ^= 1;
    }
    if (c.callbacks !== undefined && c.callbacks !== null && !ctx.broken) {
      checkCallbacks(ctx, c.callbacks);
    }
    drain(ctx);
  }
  drain(ctx);
}

/** Reset path: every token comes back exactly once overall, every mapping is unmapped. */
function detachAndReset(ctx: RunContext): void {
  const { drv, dma, memory, size, tokens, returned } = ctx;
  // Rings cannot be reset while buffers are outstanding (the driver must detach them first).
  if (drv.outstanding > 0) {
    let refused = false;
    try {
      drv.resetRings();
    } catch {
      refused = true;
    }
    if (!refused) {
      throw new OracleFailure("reset-rings", `resetRings accepted, ${drv.outstanding} outstanding`);
    }
  }
  for (let i = 0; i <= tokens; i++) {
    const t = drv.detachUnused();
    if (t === undefined) break;
    if (returned.has(t)) throw new OracleFailure("token-twice", `detached token ${t} again`);
    returned.add(t);
  }
  if (returned.size !== tokens) {
    throw new OracleFailure("token-lost", `${tokens} added, ${returned.size} came back`);
  }
  if (dma.live.size !== 0) {
    throw new OracleFailure("mapping-leak", `${dma.live.size} streaming mappings still live`);
  }
  // After detaching everything the ring restarts (§2.8.1): zeroed, wrap counters 1, not broken.
  drv.resetRings();
  const ringBytes = new Uint8Array(drv.ringLayout.deviceEventOffset + 4);
  memory.read(RING, ringBytes);
  const zeroed = ringBytes.every((b) => b === 0);
  if (drv.numFree !== size || drv.outstanding !== 0 || drv.broken !== null || !zeroed) {
    throw new OracleFailure(
      "reset-rings",
      `after resetRings: ${drv.numFree} free, ${drv.outstanding} outstanding, broken ` +
        `${drv.broken?.code ?? "no"}, ring zeroed ${zeroed}`,
    );
  }
}

function run(input: PackedHostileDeviceInput): void {
  const memory = GuestMemory.flat(MEM);
  const shifted = input.badConfig == null ? input.busShift ?? 0 : 0;
  const dma = new TrackingDma(shifted);
  if (input.badConfig !== undefined && input.badConfig !== null) {
    return runBadConfig(input, memory, dma);
  }
  const features = (input.indirect ? featureMask(VIRTIO_F_INDIRECT_DESC) : 0n) |
    (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n) |
    (input.eventIdx ? featureMask(VIRTIO_F_EVENT_IDX) : 0n);
  const ctx = setUp(input, memory, dma, features);
  const kick = addAndKick(ctx);
  const dev = new PackedDeviceQueue({
    memory,
    dma: shifted === 0 ? new IdentityAddressSpace() : new ShiftSpace(shifted),
    size: ctx.size,
    addresses: ctx.drv.addresses,
    features,
  });
  popAll(ctx, dev);
  checkDeviceAfterPops(ctx, dev, kick);
  // One more buffer, added but not published: naming its ID is USED_ID_NOT_HEAD.
  if (
    input.unpublished && input.buffers.length > 0 && addBuffer(ctx, input.buffers[0], ctx.tokens)
  ) {
    ctx.tokens++;
  }
  ctx.fifo = ctx.popped.map((b) => b.id);
  ctx.pending = [...ctx.popped];
  completeHostile(ctx);
  detachAndReset(ctx);
}

/** The packed hostile-device target. */
/** Used elements the driver took or rejected, over every run in this process (`workDone`). */
let chainsDone = 0;

export const packedHostileDevice: FuzzTarget<PackedHostileDeviceInput> = {
  name: "packed-hostile-device",
  workUnit: "chains",
  workDone: () => chainsDone,
  description: "hostile device vs packed driver: used descriptors in any order, corrupted",
  arbitrary,
  run,
  encode: (i) => i,
  decode: (json) => inputSchema.parse(json),
};
