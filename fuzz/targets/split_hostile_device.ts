/**
 * Fuzz target `split-hostile-device`: a hostile device against the split driver queue.
 *
 * The input is a sequence of operations: driver adds, kicks and `getUsed` calls; a well-behaved
 * device step (pop, loopback, push, flush through a real `SplitDeviceQueue`); and hostile writes
 * to the used ring (any id/len in any slot, any used idx) and to the descriptor table.
 *
 * Oracle (mirror of the hostile-driver target): every token comes back at most once from
 * `getUsed`, and only a token that is outstanding; `usedLen` never exceeds the buffer's writable
 * capacity; every throw is a catalogued `VirtqError` (driver-side codes from `getUsed`, API codes
 * from `add`); once broken, `getUsed` returns `undefined`; DMA unmaps match maps exactly (a
 * tracking `DmaApi` fails on any unmap of something not mapped) and, after a reset and
 * `detachUnused`, every token was returned exactly once and no mapping is left. Until the first
 * hostile write, every chain the device pops has exactly the GPAs and lengths of a buffer the
 * driver added (`pop-segments`): with a drawn `busShift` the bus addresses (GPA + shift) overlap
 * guest memory's GPAs, so a device that takes a bus address for a GPA is caught.
 *
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  type DmaApi,
  type DmaDirection,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  SgList,
  SplitDeviceQueue,
  SplitDriverQueue,
  type U64,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VirtqError,
} from "../../src/mod.ts";
import { createDriverQueue, createQueuePair, driverQueueFootprint } from "../../src/virtio/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** One step of the scenario. */
export type DeviceOp =
  | {
    k: "add";
    nr: number;
    nw: number;
    len: number;
    /** Segment (readable first) given length 0; absent: none. */
    zero?: number;
    /** The n-th streaming map of this add fails; absent: none. */
    failMap?: number;
  }
  | { k: "kick" }
  | { k: "get"; n: number }
  | { k: "serve"; n: number }
  | { k: "used"; slot: number; id: number; len: number }
  | { k: "usedIdx"; delta: number }
  | { k: "forge"; id: number; len: number }
  | { k: "scribble"; word: number; value: number }
  | { k: "callbacks"; enable: boolean }
  /**
   * The device asks for available buffer notifications its own way (§2.7.10): used `flags`
   * (`VIRTQ_USED_F_NO_NOTIFY` = bit 0 of `flags`) and `avail_event`, any values; `sleep`: the
   * device's own `setNotifications(true)` instead (it sleeps until notified).
   */
  | { k: "event"; flags: number; availEvent: number; sleep: boolean };

/** One fuzz input (JSON-safe). */
export interface HostileDeviceInput {
  /** Queue Size, a power of 2 in 2..32. */
  size: number;
  /** VIRTIO_F_INDIRECT_DESC / EVENT_IDX / IN_ORDER negotiated. */
  indirect: boolean;
  eventIdx: boolean;
  inOrder: boolean;
  /** Driver policies. */
  indirectPolicy: "never" | "always" | "auto";
  clamp: boolean;
  /** Hostile ops (forge/used/usedIdx/scribble) before this index are skipped: an honest prefix. */
  hostileFrom: number;
  /** The scenario. */
  ops: DeviceOp[];
  /**
   * Instead of the scenario: a bad configuration handed to the factory (absent: none);
   * `pair-nan` hands `createQueuePair` a ring GPA of NaN (not 0: refused as misaligned).
   */
  badConfig?: "size3" | "size-big" | "misaligned" | "unmapped" | "map-fail" | "pair-nan";
  /** The DMA API's bus = GPA + busShift (absent: + 4 GiB, outside guest memory's GPAs). */
  busShift?: number;
}

const RING = 0x0;
const DATA = 0x40000;
const MEM = 0x80000;

/** A DmaApi (bus = GPA + shift, default 4 GiB) that tracks live streaming mappings and rejects
 * bad unmaps. */
class TrackingDma implements DmaApi {
  readonly name = "tracking";
  constructor(readonly shift = 0x1_0000_0000) {}
  readonly live = new Map<string, number>();
  /** Live streaming mappings. */
  count = 0;
  /** Streaming maps left before one fails (-1: never); `failed` once it did. */
  failIn = -1;
  failed = false;
  /** Coherent maps left before one fails (-1: never). */
  coherentFailIn = -1;
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    if (this.failIn >= 0 && this.failIn-- === 0) {
      this.failed = true;
      throw new Error(`planned map failure at GPA ${gpa}`);
    }
    this.count++;
    const k = `${gpa + this.shift}:${length}:${dir}`;
    this.live.set(k, (this.live.get(k) ?? 0) + 1);
    return gpa + this.shift;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    const k = `${bus}:${length}:${dir}`;
    const n = this.live.get(k);
    if (n === undefined) fail("bad-unmap", `unmap of ${k}, which is not mapped`);
    this.count--;
    if (n === 1) this.live.delete(k);
    else this.live.set(k, n - 1);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, _length: number): U64 {
    if (this.coherentFailIn >= 0 && this.coherentFailIn-- === 0) {
      throw new Error("planned coherent map failure");
    }
    return gpa + this.shift;
  }
  unmapCoherent(): void {}
}

/** Device view matching {@link TrackingDma}: bus - shift = GPA. */
class OffsetSpace extends IdentityAddressSpace {
  constructor(readonly shift: number) {
    super("offset");
  }
  override translate(
    bus: U64,
    length: number,
    access: number,
    out: import("../../src/mod.ts").DmaTranslation,
  ): void {
    super.translate(typeof bus === "number" ? bus - this.shift : bus, length, access, out);
  }
}

function fail(oracle: string, msg: string, cause?: unknown): never {
  throw new OracleFailure(oracle, msg, cause);
}

/** §2.7 / §4.1.4.3: a bad configuration is refused with its catalogue code through the factory. */
function runBadConfig(bad: NonNullable<HostileDeviceInput["badConfig"]>, size: number): void {
  const memory = GuestMemory.flat(MEM);
  const dma = new TrackingDma();
  let ringGpa = RING;
  if (bad === "size3") size = 3;
  if (bad === "size-big") size = 65536;
  if (bad === "misaligned") ringGpa = RING + 8;
  if (bad === "unmapped") ringGpa = MEM - driverQueueFootprint("split", size, 0n) + 16;
  if (bad === "map-fail") dma.coherentFailIn = 1; // the second area fails, the first is undone
  const want = {
    "size3": "QUEUE_SIZE_INVALID",
    "size-big": "QUEUE_SIZE_INVALID",
    "misaligned": "RING_MISALIGNED",
    "unmapped": "RING_UNMAPPED",
    "map-fail": "DMA_MAP_FAILED",
    "pair-nan": "RING_MISALIGNED",
  }[bad];
  let got = "no error";
  try {
    if (bad === "pair-nan") createQueuePair({ layout: "split", size, memory, ringGpa: NaN });
    else createDriverQueue("split", { memory, dma, size, features: 0n, ringGpa });
  } catch (e) {
    got = e instanceof VirtqError ? e.code : String(e);
  }
  if (got !== want) fail("bad-config", `${bad}: factory threw ${got}, expected ${want}`);
}

/** State shared by the phases of one run: the queues, ring addresses and the tokens' fate. */
interface RunContext {
  input: HostileDeviceInput;
  size: number;
  memory: GuestMemory;
  dma: TrackingDma;
  drv: SplitDriverQueue<number>;
  dev: SplitDeviceQueue;
  usedBase: number;
  availBase: number;
  /** Outstanding token -> writable capacity. */
  cap: Map<number, number>;
  returned: Set<number>;
  /** Next token to add. */
  next: number;
  deviceDead: boolean;
  /** Avail idx at the last kick. */
  kicked: number;
  /** Segment lists (`gpa+len` readable, then `|`, writable) of the buffers added, by count. */
  added: Map<string, number>;
  /** A hostile write happened (the rings may hold what the driver never wrote). */
  hostile: boolean;
}

type OpOf<K extends DeviceOp["k"]> = Extract<DeviceOp, { k: K }>;

/** Builds both queues over one guest memory and the context every phase shares. */
function setUp(input: HostileDeviceInput): RunContext {
  const size = input.size;
  const bits = [VIRTIO_F_VERSION_1];
  if (input.indirect) bits.push(VIRTIO_F_INDIRECT_DESC);
  if (input.eventIdx) bits.push(VIRTIO_F_EVENT_IDX);
  if (input.inOrder) bits.push(VIRTIO_F_IN_ORDER);
  const features = featureMask(...bits);
  const memory = GuestMemory.flat(MEM);
  const dma = new TrackingDma(input.busShift);
  const drv = new SplitDriverQueue<number>({
    memory,
    dma,
    size,
    features,
    ringGpa: RING,
    policy: {
      indirect: input.indirectPolicy,
      usedLenExceedsCapacity: input.clamp ? "clamp" : "reject",
    },
  });
  const dev = new SplitDeviceQueue({
    memory,
    dma: new OffsetSpace(dma.shift),
    size,
    addresses: drv.addresses,
    features,
    policy: { zeroLength: "allow" },
  });
  return {
    input,
    size,
    memory,
    dma,
    drv,
    dev,
    usedBase: RING + drv.placement.usedOffset,
    availBase: RING + drv.placement.availOffset,
    cap: new Map(),
    returned: new Set(),
    next: 0,
    deviceDead: false,
    kicked: 0,
    added: new Map(),
    hostile: false,
  };
}

/** Takes one token the driver returned: known, not returned before, within its capacity. */
function collect(ctx: RunContext, t: number | undefined): boolean {
  const { drv, cap, returned } = ctx;
  if (t === undefined) return false;
  if (returned.has(t)) fail("token-twice", `token ${t} returned twice`);
  const c = cap.get(t);
  if (c === undefined) fail("token-unknown", `token ${t} was never added`);
  if (drv.usedLen > c) {
    fail("len-over-capacity", `usedLen ${drv.usedLen} > capacity ${c} of token ${t}`);
  }
  returned.add(t);
  cap.delete(t);
  return true;
}

/** The driver adds one buffer; a refused add must take nothing. */
function opAdd(ctx: RunContext, op: OpOf<"add">): void {
  const { dma, drv } = ctx;
  const r = new SgList(), w = new SgList();
  const base = DATA + (ctx.next % 64) * 0x1000;
  const zero = op.zero ?? -1;
  const n = op.nr + op.nw;
  for (let i = 0; i < op.nr; i++) r.push(base + i * op.len, i === zero ? 0 : op.len);
  for (let i = 0; i < op.nw; i++) {
    w.push(base + 0x800 + i * op.len, op.nr + i === zero ? 0 : op.len);
  }
  const live = dma.count, free = drv.numFree;
  const empty = n === 0 || (zero >= 0 && zero < n);
  dma.failIn = op.failMap ?? -1;
  dma.failed = false;
  try {
    drv.add(r, w, ctx.next);
    if (empty || dma.failed) {
      fail("add-accepted", `add accepted an empty segment or a failed map (${n} segments)`);
    }
    // §2.7.5.3.1 and the driver's documented policy: an indirect table holds at most
    // min(Queue Size, SPLIT_INDIRECT_MAX_ENTRIES = 16) entries; "always" uses one whenever the
    // buffer fits it, "auto" only when the ring lacks the descriptors, "never" never
    const policy = ctx.input.indirectPolicy;
    const fits = ctx.input.indirect && policy !== "never" && n >= 2 &&
      n <= Math.min(ctx.size, 16);
    const want = fits && (policy === "always" || free < n) ? 1 : n;
    if (free - drv.numFree !== want) {
      fail(
        "indirect-policy",
        `add of ${n} segments (policy ${policy}, ${free} free) took ${free - drv.numFree} ` +
          `descriptors, want ${want}`,
      );
    }
    ctx.cap.set(ctx.next, op.nw * op.len - (zero >= op.nr && zero < n ? op.len : 0));
    const key = sgKey(r.gpa, r.len, r.count, w.gpa, w.len, w.count);
    ctx.added.set(key, (ctx.added.get(key) ?? 0) + 1);
    ctx.next++;
  } catch (e) {
    if (e instanceof OracleFailure) throw e;
    if (!(e instanceof VirtqError) || e.side !== "api") {
      fail("uncatalogued-throw", `add threw ${e}`, e);
    }
    if (e.code === "QUEUE_BROKEN" && drv.broken === null) {
      fail("bogus-broken", "QUEUE_BROKEN while not broken");
    }
    // §2.7.4: a zero-length segment is BUFFER_EMPTY; a failed mapping DMA_MAP_FAILED.
    if (
      (e.code === "DMA_MAP_FAILED") !== dma.failed ||
      (e.code === "BUFFER_EMPTY" && !empty)
    ) {
      fail("add-refusal", `add threw ${e.code}, map failed ${dma.failed}, empty ${empty}`);
    }
    // A refused add takes nothing: no slot, no mapping left behind.
    if (dma.count !== live || drv.numFree !== free) {
      fail("add-rollback", `refused add (${e.code}) left ${dma.count - live} mappings`);
    }
  } finally {
    dma.failIn = -1;
  }
}

/**
 * The device sleeps until notified: the kick must notify exactly when the ring bytes ask
 * (§2.7.10: vring_need_event(avail_event, new, old) with EVENT_IDX, else used flags without
 * VIRTQ_USED_F_NO_NOTIFY); new = old means nothing to publish.
 */
function opKick(ctx: RunContext): void {
  const { drv, memory, usedBase, size } = ctx;
  const old = ctx.kicked, nw = drv.availIdx;
  const notify = drv.kick();
  ctx.kicked = drv.availIdx;
  if (drv.broken !== null || nw === old) return;
  const need = ctx.input.eventIdx
    ? needEvent(memory.readU16(usedBase + 4 + 8 * size), nw, old)
    : (memory.readU16(usedBase) & 1) === 0;
  if (need && !notify) {
    fail("lost-notification", `kick ${old} -> ${nw}: the device asked, no notification`);
  }
  if (!need && notify) {
    fail("notification-decision", `kick ${old} -> ${nw}: notified, the device did not ask`);
  }
}

/** The driver takes up to `n` used buffers; after an error it is broken and returns nothing. */
function opGet(ctx: RunContext, op: OpOf<"get">): void {
  const { drv } = ctx;
  for (let i = 0; i < op.n; i++) {
    const wasBroken = drv.broken !== null;
    let t: number | undefined;
    try {
      t = drv.getUsed();
    } catch (e) {
      if (!(e instanceof VirtqError) || e.side !== "driver") {
        fail("uncatalogued-throw", `getUsed threw ${e}`, e);
      }
      if (wasBroken) fail("throw-after-broken", `getUsed threw ${e.code} while broken`, e);
      if (drv.broken !== e) fail("not-broken", `driver not broken after ${e.code}`);
      chainsDone++;
      return;
    }
    if (t !== undefined) chainsDone++;
    if (wasBroken && t !== undefined) {
      fail("token-after-broken", `token ${t} returned while broken`);
    }
    if (!collect(ctx, t)) return;
  }
}

/** A well-behaved device step; it may itself meet corrupted rings (hostile writes). */
function opServe(ctx: RunContext, op: OpOf<"serve">): void {
  const { dev } = ctx;
  if (ctx.deviceDead) return;
  try {
    for (let i = 0; i < op.n; i++) {
      const c = dev.pop();
      if (c === null) break;
      if (!ctx.hostile) {
        const key = sgKey(
          c.readableGpa,
          c.readableLen,
          c.readableCount,
          c.writableGpa,
          c.writableLen,
          c.writableCount,
        );
        const k = ctx.added.get(key);
        if (k === undefined) {
          fail("pop-segments", `the device popped [${key}], which the driver never added`);
        }
        if (k === 1) ctx.added.delete(key);
        else ctx.added.set(key, k - 1);
      }
      dev.push(c, c.copyReadableToWritable());
    }
    dev.flush();
  } catch (e) {
    if (e instanceof OracleFailure) throw e;
    if (!(e instanceof VirtqError)) fail("uncatalogued-throw", `device threw ${e}`, e);
    ctx.deviceDead = true;
  }
}

/** A segment list as a string: `gpa+len` readable segments, `|`, writable ones. */
function sgKey(
  rg: ArrayLike<number>,
  rl: ArrayLike<number>,
  rn: number,
  wg: ArrayLike<number>,
  wl: ArrayLike<number>,
  wn: number,
): string {
  let s = "";
  for (let i = 0; i < rn; i++) s += `${rg[i]}+${rl[i]},`;
  s += "|";
  for (let i = 0; i < wn; i++) s += `${wg[i]}+${wl[i]},`;
  return s;
}

/**
 * Spec §2.7.7 / §2.7.10: without EVENT_IDX the driver writes VIRTQ_AVAIL_F_NO_INTERRUPT into
 * avail.flags; with it, used_event (after the avail ring) = last seen used idx (- 1 to
 * suppress). enableCallbacks reports whether nothing new is pending.
 */
function opCallbacks(ctx: RunContext, op: OpOf<"callbacks">): void {
  const { drv, memory, usedBase, availBase, size, input } = ctx;
  const last = drv.lastUsedIdx;
  const usedIdx = memory.readU16(usedBase + 2);
  let pending: boolean | undefined;
  if (op.enable) pending = !drv.enableCallbacks();
  else drv.disableCallbacks();
  const flags = memory.readU16(availBase);
  const usedEvent = memory.readU16(availBase + 4 + 2 * size);
  const want = op.enable ? last : (last - 1) & 0xffff;
  if (
    input.eventIdx ? usedEvent !== want : flags !== (op.enable ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT)
  ) {
    fail(
      "callbacks",
      `${op.enable ? "enable" : "disable"}Callbacks (event idx ${input.eventIdx}): ` +
        `avail.flags ${flags}, used_event ${usedEvent}, last used ${last}`,
    );
  }
  if (pending !== undefined && pending !== (usedIdx !== last)) {
    fail(
      "callbacks",
      `enableCallbacks: pending ${pending}, used idx ${usedIdx}, last ${last}`,
    );
  }
}

/** The device's own writes to the rings: notification asks and hostile used-ring edits. */
function opDeviceWrite(
  ctx: RunContext,
  op: OpOf<"event" | "used" | "forge" | "usedIdx" | "scribble">,
): void {
  const { memory, usedBase, size } = ctx;
  switch (op.k) {
    case "event":
      if (op.sleep) {
        if (!ctx.deviceDead) ctx.dev.setNotifications(true);
      } else {
        memory.writeU16(usedBase, op.flags & 0xffff);
        memory.writeU16(usedBase + 4 + 8 * size, op.availEvent & 0xffff);
      }
      break;
    case "used":
      memory.writeU32(usedBase + 4 + 8 * (op.slot % size), op.id >>> 0);
      memory.writeU32(usedBase + 8 + 8 * (op.slot % size), op.len >>> 0);
      break;
    case "forge": {
      // A forged completion: one used element at the current used idx, idx + 1.
      const idx = memory.readU16(usedBase + 2);
      memory.writeU32(usedBase + 4 + 8 * (idx % size), op.id >>> 0);
      memory.writeU32(usedBase + 8 + 8 * (idx % size), op.len >>> 0);
      memory.writeU16(usedBase + 2, (idx + 1) & 0xffff);
      break;
    }
    case "usedIdx":
      memory.writeU16(usedBase + 2, (memory.readU16(usedBase + 2) + op.delta) & 0xffff);
      break;
    case "scribble":
      memory.writeU32(RING + 4 * (op.word % (4 * size)), op.value >>> 0);
      break;
  }
}

/** Reset: every outstanding token comes back exactly once, no mapping is left, rings restart. */
function resetAndDetach(ctx: RunContext): void {
  const { drv, dev, dma, memory, size, availBase, cap, returned } = ctx;
  // Rings cannot be reset while buffers are outstanding (the driver must detach them first).
  if (drv.outstanding > 0) {
    let refused = false;
    try {
      drv.resetRings();
    } catch {
      refused = true;
    }
    if (!refused) fail("reset-rings", `resetRings accepted with ${drv.outstanding} outstanding`);
  }
  // Reset: every outstanding token comes back exactly once through detachUnused.
  dev.reset();
  for (let t = drv.detachUnused(); t !== undefined; t = drv.detachUnused()) {
    if (returned.has(t)) fail("token-twice", `detachUnused returned token ${t}, already returned`);
    if (!cap.has(t)) fail("token-unknown", `detachUnused returned unknown token ${t}`);
    returned.add(t);
    cap.delete(t);
  }
  if (returned.size !== ctx.next) {
    fail("token-lost", `${ctx.next} tokens added, ${returned.size} came back`);
  }
  if (dma.live.size !== 0) fail("mapping-leak", `${dma.live.size} DMA mappings left after detach`);
  // After detaching everything the rings reset to their initial state (spec §2.1.2), not broken.
  drv.resetRings();
  if (
    drv.numFree !== size || drv.outstanding !== 0 || drv.availIdx !== 0 ||
    drv.lastUsedIdx !== 0 || drv.broken !== null || memory.readU16(availBase + 2) !== 0
  ) {
    fail(
      "reset-rings",
      `after resetRings: ${drv.numFree} free, ${drv.outstanding} outstanding, avail idx ` +
        `${drv.availIdx}, broken ${drv.broken?.code ?? "no"}`,
    );
  }
}

/** Runs one input (exported for tests). */
export function runHostileDevice(input: HostileDeviceInput): void {
  if (input.badConfig !== undefined) return runBadConfig(input.badConfig, input.size);
  const ctx = setUp(input);
  for (let oi = 0; oi < input.ops.length; oi++) {
    const op = input.ops[oi];
    const hostileOp = op.k === "forge" || op.k === "used" || op.k === "usedIdx" ||
      op.k === "scribble";
    if (hostileOp && oi < input.hostileFrom) continue;
    if (hostileOp) ctx.hostile = true;
    switch (op.k) {
      case "add":
        opAdd(ctx, op);
        break;
      case "kick":
        opKick(ctx);
        break;
      case "get":
        opGet(ctx, op);
        break;
      case "serve":
        opServe(ctx, op);
        break;
      case "callbacks":
        opCallbacks(ctx, op);
        break;
      default:
        opDeviceWrite(ctx, op);
    }
  }
  resetAndDetach(ctx);
}

const opArb: fc.Arbitrary<DeviceOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("add" as const),
      nr: fc.nat(3),
      nw: fc.nat(3),
      len: fc.integer({ min: 1, max: 200 }),
    }, { noNullPrototype: true }),
  },
  {
    // many segments: 12 to 24, around and past the 16 entries of the driver's indirect tables
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("add" as const),
      nr: fc.integer({ min: 6, max: 12 }),
      nw: fc.integer({ min: 6, max: 12 }),
      len: fc.integer({ min: 1, max: 100 }),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("add" as const),
      nr: fc.nat(3),
      nw: fc.nat(3),
      len: fc.integer({ min: 1, max: 200 }),
      zero: fc.nat(6),
      failMap: fc.nat(7),
    }, { requiredKeys: ["k", "nr", "nw", "len"], noNullPrototype: true }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant("kick" as const) }, { noNullPrototype: true }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ k: fc.constant("get" as const), n: fc.integer({ min: 1, max: 8 }) }, {
      noNullPrototype: true,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ k: fc.constant("serve" as const), n: fc.integer({ min: 1, max: 8 }) }, {
      noNullPrototype: true,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("forge" as const),
      id: fc.oneof(fc.nat(40), fc.nat()),
      len: fc.oneof(fc.nat(700), fc.nat()),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("used" as const),
      slot: fc.nat(63),
      id: fc.oneof(fc.nat(40), fc.nat()),
      len: fc.oneof(fc.nat(700), fc.nat()),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("usedIdx" as const),
      delta: fc.oneof(fc.integer({ min: -2, max: 2 }), fc.integer({ min: -3, max: 40 })),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("callbacks" as const), enable: fc.boolean() }, {
      noNullPrototype: true,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("event" as const),
      flags: fc.oneof(fc.nat(1), fc.nat(0xffff)),
      availEvent: fc.oneof(fc.nat(8), fc.nat(0xffff)),
      sleep: fc.boolean(),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("scribble" as const),
      word: fc.nat(255),
      value: fc.nat(),
    }, { noNullPrototype: true }),
  },
);

const inputArb: fc.Arbitrary<HostileDeviceInput> = fc.record({
  size: fc.constantFrom(2, 4, 8, 32),
  indirect: fc.boolean(),
  eventIdx: fc.boolean(),
  inOrder: fc.boolean(),
  indirectPolicy: fc.constantFrom("never" as const, "always" as const, "auto" as const),
  clamp: fc.boolean(),
  hostileFrom: fc.nat(60),
  ops: fc.array(opArb, { maxLength: 60, size: "max" }),
  badConfig: fc.oneof(
    // one input in 20 (fc.option's freq is the odds of the nil value: freq 20 made it 19 in 20)
    { weight: 19, arbitrary: fc.constant(undefined) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "size3" as const,
        "size-big" as const,
        "misaligned" as const,
        "unmapped" as const,
        "map-fail" as const,
        "pair-nan" as const,
      ),
    },
  ),
  busShift: fc.constantFrom(undefined, undefined, undefined, 0x40, 0x1000),
}, { noNullPrototype: true });

const opSchema = z.discriminatedUnion("k", [
  z.strictObject({
    k: z.literal("add"),
    nr: z.number().int().min(0).max(64),
    nw: z.number().int().min(0).max(64),
    len: z.number().int().min(1).max(0x200),
    zero: z.number().int().min(0).optional(),
    failMap: z.number().int().min(0).optional(),
  }),
  z.strictObject({ k: z.literal("kick") }),
  z.strictObject({ k: z.literal("get"), n: z.number().int().min(0) }),
  z.strictObject({ k: z.literal("serve"), n: z.number().int().min(0) }),
  z.strictObject({
    k: z.literal("used"),
    slot: z.number().int().min(0),
    id: z.number().int().min(0),
    len: z.number().int().min(0),
  }),
  z.strictObject({ k: z.literal("usedIdx"), delta: z.number().int() }),
  z.strictObject({
    k: z.literal("forge"),
    id: z.number().int().min(0),
    len: z.number().int().min(0),
  }),
  z.strictObject({
    k: z.literal("scribble"),
    word: z.number().int().min(0),
    value: z.number().int().min(0),
  }),
  z.strictObject({ k: z.literal("callbacks"), enable: z.boolean() }),
  z.strictObject({
    k: z.literal("event"),
    flags: z.number().int().min(0).max(0xffff),
    availEvent: z.number().int().min(0).max(0xffff),
    sleep: z.boolean(),
  }),
]);

const inputSchema = z.strictObject({
  size: z.number().int().refine((n) => [2, 4, 8, 16, 32].includes(n), {
    error: "size must be a power of 2 in 2..32",
  }),
  indirect: z.boolean(),
  eventIdx: z.boolean(),
  inOrder: z.boolean(),
  indirectPolicy: z.enum(["never", "always", "auto"]),
  clamp: z.boolean(),
  hostileFrom: z.number().int().min(0),
  ops: z.array(opSchema),
  badConfig: z.enum(["size3", "size-big", "misaligned", "unmapped", "map-fail", "pair-nan"])
    .optional(),
  busShift: z.number().int().min(1).max(0x1_0000_0000).optional(),
});

/** `vring_need_event` (spec §2.7.10), written apart from the engine's. */
function needEvent(event: number, nw: number, old: number): boolean {
  return ((nw - event - 1) & 0xffff) < ((nw - old) & 0xffff);
}

/** The `split-hostile-device` target. */
/** Used elements the driver took or rejected, over every run in this process (`workDone`). */
let chainsDone = 0;

export const splitHostileDevice: FuzzTarget<HostileDeviceInput> = {
  name: "split-hostile-device",
  workUnit: "chains",
  workDone: () => chainsDone,
  description:
    "hostile device vs split driver: forged used elements/idx and descriptor scribbles; tokens at most once, no leaks",
  arbitrary: () => inputArb,
  run: runHostileDevice,
  encode: (input) => structuredClone(input),
  decode: (json) => inputSchema.parse(json) as HostileDeviceInput,
};
