/**
 * Fuzz target `viommu-stack`: the full stack under random map/unmap traffic: the driver's
 * `virtio-iommu` DmaApi sends MAP/UNMAP over the requestq (our split ring) to the IOMMU device,
 * and a loopback device behind the endpoint serves a split virtqueue whose driver maps every
 * ring area and buffer through that DmaApi (so each buffer costs a MAP and an UNMAP) and whose
 * device translates every address through the endpoint's `DmaAddressSpace`.
 *
 * Oracles (the driver's shadow of what it mapped is the reference):
 * - `data-intact`: a buffer sent through the loopback queue comes back byte for byte, with the
 *   used length the loopback promises;
 * - `translation`: an access at any bus address translates iff a live mapping (rounded to the
 *   granule, as the driver maps whole pages) covers it with the right permission, to the GPA the
 *   shadow predicts; otherwise it is a `DmaFault`;
 * - `mapping-set`: the device's mapping set equals the driver's shadow (plus the ring areas'
 *   coherent mappings) after every operation (`mapBatch` sends several MAPs in one kick, laid
 *   out back to back in the requestq staging area);
 * - `fault-report`: every fault the device takes while the driver has event buffers posted is
 *   reported, never dropped (the driver drains the eventq and re-posts its buffers: a re-post
 *   the device is never told about leaves it without buffers: `lost-notification`); a drain
 *   returns exactly the faults reported since the last one, with their addresses and access;
 * - a hostile eventq (the driver corrupts the eventq ring: avail `idx` jumping past Queue Size,
 *   event buffers outside guest memory, `next` out of range) stops the device's fault reporting
 *   (`broken`, a `VirtqError`) and nothing but a `DmaFault` leaves the faulting translation.
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import {
  createQueuePair,
  createViommuStack,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  type DmaDirection,
  DmaFault,
  DmaTranslation,
  featureMask,
  GuestMemory,
  LoopbackDevice,
  SgList,
  ViommuDirectTransport,
  type ViommuTransport,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VirtqError,
} from "../../src/mod.ts";

const PAGE = 0x1000;
const BUF_BASE = 0x10000;
const BUF_SIZE = 0x40000;
const STAGING = 0x80000;
const RING = 0xa0000;
/** GPA of the long-lived window (between the buffers and the staging area). */
const LONG_LIVED = 0x60000;

/** One operation of the stack target. */
export type ViommuStackOp =
  | { readonly op: "map"; readonly off: number; readonly len: number; readonly dir: DmaDirection }
  | {
    readonly op: "mapBatch";
    readonly offs: readonly number[];
    readonly lens: readonly number[];
    readonly dir: DmaDirection;
  }
  | { readonly op: "drain" }
  | { readonly op: "unmap"; readonly pick: number }
  | {
    readonly op: "loop";
    readonly src: number;
    readonly dst: number;
    readonly len: number;
    readonly seed: number;
  }
  | {
    readonly op: "probe";
    readonly bus: number;
    readonly near: boolean;
    readonly write: boolean;
    /** With `near`: the last byte of the mapping's granule-rounded end, or the first past it. */
    readonly edge?: boolean;
  };

/**
 * Which offered features the driver declines (spec §2.2: negotiated = offered ∩ accepted) and
 * the device's `bypass` config field (§5.13.4.2).
 */
export interface ViommuNegotiation {
  /** Feature bits (VIRTIO_IOMMU_F_*) the driver declines. */
  readonly decline: readonly number[];
  /** Config `bypass` (with BYPASS_CONFIG offered: unattached endpoints bypass the IOMMU). */
  readonly bypass: 0 | 1;
}

/** One input: the negotiation, then the operations. */
export interface ViommuStackInput {
  readonly negotiation: ViommuNegotiation;
  readonly ops: readonly ViommuStackOp[];
  /**
   * Pages of a long-lived window over `[LONG_LIVED, +pages)` (`longLived`, mapped at attach,
   * highest IOVA; the buffers lie outside it and still MAP/UNMAP each); 0 or absent: none.
   */
  readonly longLivedPages?: number;
  /** Event buffers the driver posts on the eventq (default 8). */
  readonly eventBuffers?: number;
  /** After the operations: corrupt the eventq ring (`kind` 0 avail idx jump, 1 buffers outside
   * guest memory, 2 `next` out of range) and take a fault. */
  readonly hostileEventq?: { readonly kind: number; readonly value: number } | null;
}

/** The x86 MSI window, the RESV_MEM region the stack's endpoint reports to PROBE. */
const MSI_START = 0xfee0_0000, MSI_END = 0xfeef_ffff;

interface Live {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
}

/**
 * Oracle `custom-transport` (one input in 16): `createViommuStack` with a transport factory uses
 * the transport the factory returns, and a mapping made through it reaches the device (the
 * device's view translates it to the buffer's GPA).
 */
function checkCustomTransport(): void {
  const mem = GuestMemory.flat(0x100000);
  let made: ViommuTransport | null = null;
  const s = createViommuStack({
    memory: mem,
    stagingGpa: STAGING,
    transport: (device) => (made = new ViommuDirectTransport(device, mem, STAGING)),
  });
  if (made === null || s.transport !== made || s.queues !== null) {
    throw new OracleFailure("custom-transport", "createViommuStack ignored the transport factory");
  }
  const bus = s.api.map(0x3000, 64, 1);
  const out = new DmaTranslation();
  s.space.translate(bus, 64, DMA_ACCESS_READ, out);
  if (out.gpa !== 0x3000 || out.length !== 64) {
    throw new OracleFailure("custom-transport", `map through the factory's transport: ${out.gpa}`);
  }
}

function run(input: ViommuStackInput): void {
  const { negotiation, ops } = input;
  if (ops.length % 16 === 3) checkCustomTransport();
  const mem = GuestMemory.flat(0x100000);
  let declined = 0n;
  for (const b of negotiation.decline) declined |= 1n << BigInt(b);
  const has = (b: number) => !negotiation.decline.includes(b);
  const llPages = has(VIRTIO_IOMMU_F_MAP_UNMAP) ? input.longLivedPages ?? 0 : 0;
  const s = createViommuStack({
    memory: mem,
    stagingGpa: STAGING,
    longLived: llPages > 0 ? { gpa: LONG_LIVED, size: llPages * PAGE } : undefined,
    config: { bypass: negotiation.bypass },
    driverFeatures: ~declined & ((1n << 64n) - 1n),
    eventBuffers: input.eventBuffers,
  });
  const faults = new FaultBook(s, Math.min(input.eventBuffers ?? 8, 64));
  // PROBE declined: the driver never learns the endpoint's reserved regions (§5.13.6.8).
  if (has(VIRTIO_IOMMU_F_PROBE) !== (s.api.resvMem.length > 0)) {
    throw new OracleFailure(
      "feature-implied",
      `PROBE ${has(VIRTIO_IOMMU_F_PROBE) ? "negotiated" : "declined"}, ` +
        `${s.api.resvMem.length} RESV_MEM region(s) learned`,
    );
  }
  let pair;
  try {
    pair = createQueuePair<number>({
      memory: mem,
      size: 16,
      ringGpa: RING,
      dmaApi: s.api,
      dmaSpace: s.space,
      features: featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM),
    });
  } catch (e) {
    // MAP_UNMAP declined: the device answers UNSUPP to every MAP (§5.13.6.6), so not even the
    // rings can be mapped; nothing else may refuse the queue.
    if (!has(VIRTIO_IOMMU_F_MAP_UNMAP)) return;
    throw e;
  }
  if (!has(VIRTIO_IOMMU_F_MAP_UNMAP)) {
    throw new OracleFailure("feature-implied", "MAP_UNMAP declined, yet the rings were mapped");
  }
  const ringMaps = s.device.domainMappings(1) ?? [];
  // The rings' coherent mappings (and the long-lived window's) are part of the shadow:
  // bidirectional, page-rounded.
  const ringLive: Live[] = ringMaps.map((m) => ({
    bus: Number(m.virtStart),
    gpa: Number(m.physStart),
    len: Number(m.virtEnd) - Number(m.virtStart) + 1,
    dir: 0,
  }));
  const r: StackRun = {
    s,
    mem,
    has,
    faults,
    pair,
    loop: new LoopbackDevice(pair.device),
    ringPages: ringMaps.map((m) => Number(m.virtStart)),
    ringLive,
    live: [],
    out: new DmaTranslation(),
    rd: new SgList(1),
    wr: new SgList(1),
  };
  ops.forEach((o, k) => {
    if (stepOp(r, o, k)) checkMappingSet(r, k);
  });
  if (input.hostileEventq) hostileEventq(s, mem, faults, input.hostileEventq, r.out);
}

/** One run's stack, queue pair and the driver-side shadow of its live mappings. */
interface StackRun {
  readonly s: Stack;
  readonly mem: GuestMemory;
  /** Whether feature bit `b` was negotiated (not declined). */
  readonly has: (b: number) => boolean;
  readonly faults: FaultBook;
  readonly pair: ReturnType<typeof createQueuePair<number>>;
  readonly loop: LoopbackDevice;
  /** IOVA pages of the rings' coherent mappings (and the long-lived window's). */
  readonly ringPages: number[];
  readonly ringLive: Live[];
  /** The buffers the ops mapped and have not unmapped. */
  readonly live: Live[];
  readonly out: DmaTranslation;
  readonly rd: SgList;
  readonly wr: SgList;
}

/**
 * Applies op `k`. @returns false when it did nothing (an unmap with nothing live): the
 * mapping-set check is skipped then.
 */
function stepOp(r: StackRun, o: ViommuStackOp, k: number): boolean {
  const { s, live } = r;
  switch (o.op) {
    case "map": {
      const gpa = BUF_BASE + (o.off % (BUF_SIZE - o.len));
      const bus = Number(s.api.map(gpa, o.len, o.dir));
      live.push({ bus, gpa, len: o.len, dir: o.dir });
      checkNotMsi(r, k, bus, o.len);
      break;
    }
    case "mapBatch": {
      const gpas = o.offs.map((off, i) => BUF_BASE + (off % (BUF_SIZE - o.lens[i])));
      const buses = s.api.mapBatch(gpas, o.lens, o.dir).map(Number);
      buses.forEach((bus, i) => {
        live.push({ bus, gpa: gpas[i], len: o.lens[i], dir: o.dir });
        checkNotMsi(r, k, bus, o.lens[i]);
      });
      break;
    }
    case "drain":
      r.faults.drain(k);
      break;
    case "unmap": {
      if (live.length === 0) return false;
      const [m] = live.splice(o.pick % live.length, 1);
      s.api.unmap(m.bus, m.len, m.dir);
      break;
    }
    case "loop":
      loopOp(r, o, k);
      break;
    case "probe":
      probeOp(r, o, k);
      break;
  }
  return true;
}

/** With PROBE the driver reserves the RESV_MEM region: no IOVA inside it (§5.13.6.8.2). */
function checkNotMsi(r: StackRun, k: number, bus: number, len: number): void {
  if (r.has(VIRTIO_IOMMU_F_PROBE) && bus <= MSI_END && bus + len - 1 >= MSI_START) {
    throw new OracleFailure("feature-implied", `op ${k}: IOVA ${bus} in the MSI window`);
  }
}

/** Oracle `data-intact`: a buffer copied by the loopback device through the IOMMU. */
function loopOp(r: StackRun, o: Extract<ViommuStackOp, { op: "loop" }>, k: number): void {
  const { mem, pair, loop } = r;
  const n = o.len;
  const src = BUF_BASE + (o.src % (BUF_SIZE / 2 - n));
  const dst = BUF_BASE + BUF_SIZE / 2 + (o.dst % (BUF_SIZE / 2 - n));
  const pattern = new Uint8Array(n);
  for (let i = 0; i < n; i++) pattern[i] = (o.seed + i * 31) & 0xff;
  mem.write(src, pattern);
  mem.fill(dst, n, 0);
  pair.driver.add(r.rd.clear().push(src, n), r.wr.clear().push(dst, n), k);
  pair.driver.kick();
  if (loop.process() !== 1 || loop.error !== null) {
    throw new OracleFailure(
      "data-intact",
      `op ${k}: loopback did not complete: ${loop.error}`,
    );
  }
  const t = pair.driver.getUsed();
  if (t !== k || pair.driver.usedLen !== n) {
    throw new OracleFailure(
      "data-intact",
      `op ${k}: used token ${t} len ${pair.driver.usedLen}`,
    );
  }
  const got = mem.view(dst, n);
  for (let i = 0; i < n; i++) {
    if (got[i] !== pattern[i]) {
      throw new OracleFailure("data-intact", `op ${k}: byte ${i} of ${n} differs`);
    }
  }
}

/**
 * Oracle `translation`: a one-byte device access translates exactly when a live mapping (or a
 * ring's) covers its page with the right permission, to that mapping's GPA; fault reports are
 * booked for `fault-report`.
 */
function probeOp(r: StackRun, o: Extract<ViommuStackOp, { op: "probe" }>, k: number): void {
  const { live, out } = r;
  const access = o.write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
  // `near`: an address inside (or just past) a live mapping, the interesting cases.
  const m0 = live.length > 0 ? live[o.bus % live.length] : undefined;
  const bus = !o.near || m0 === undefined
    ? o.bus
    : o.edge === true
    ? Math.ceil((m0.bus + m0.len) / PAGE) * PAGE - 1 + (o.bus % 2)
    : m0.bus + (o.bus % (m0.len + PAGE));
  const cover = [...r.ringLive, ...live].find((m) => {
    const lo = Math.floor(m.bus / PAGE) * PAGE;
    const hi = Math.ceil((m.bus + m.len) / PAGE) * PAGE;
    return bus >= lo && bus < hi;
  });
  const allowed = cover !== undefined &&
    (cover.dir === 0 || (cover.dir === 1 ? !o.write : o.write));
  let gpa = -1;
  r.faults.before();
  try {
    r.s.space.translate(bus, 1, access, out);
    gpa = out.gpa;
  } catch (e) {
    if (!(e instanceof DmaFault)) throw e;
  }
  r.faults.after(k, bus, o.write);
  if (allowed && gpa !== cover!.gpa + (bus - cover!.bus)) {
    throw new OracleFailure("translation", `op ${k}: bus ${bus} gave GPA ${gpa}`);
  }
  if (!allowed && gpa !== -1) {
    throw new OracleFailure(
      "translation",
      `op ${k}: bus ${bus} translated without a mapping`,
    );
  }
}

/** Oracle `mapping-set`: the device's mappings of domain 1 are the driver's shadow, page by page. */
function checkMappingSet(r: StackRun, k: number): void {
  const shadow = [...r.ringPages, ...r.live.map((m) => Math.floor(m.bus / PAGE) * PAGE)]
    .sort((a, b) => a - b).join();
  const dev = (r.s.device.domainMappings(1) ?? []).map((m) => Number(m.virtStart)).join();
  if (shadow !== dev) {
    throw new OracleFailure("mapping-set", `op ${k}: device [${dev}] vs shadow [${shadow}]`);
  }
}

type Stack = ReturnType<typeof createViommuStack>;

/**
 * The driver's view of the eventq (reference for `fault-report`): how many event buffers it has
 * posted that the device has not used, and the faults reported since its last drain.
 */
class FaultBook {
  #reported = 0;
  #dropped = 0;
  readonly pending: { bus: number; write: boolean }[] = [];
  constructor(readonly s: Stack, public posted: number) {}
  /** Before a translation that may fault. */
  before(): void {
    this.#reported = this.s.device.stats.faultsReported;
    this.#dropped = this.s.device.stats.faultsDropped;
  }
  /** After it: a fault taken while buffers were posted must have been reported. */
  after(k: number, bus: number, write: boolean): void {
    if (this.s.queues === null) return;
    const rep = this.s.device.stats.faultsReported - this.#reported;
    const drop = this.s.device.stats.faultsDropped - this.#dropped;
    if (drop > 0 && this.posted > 0) {
      throw new OracleFailure(
        "lost-notification",
        `op ${k}: fault at ${bus} dropped while ${this.posted} event buffer(s) were posted ` +
          "(re-posted buffers the device was never told about?)",
      );
    }
    if (rep > 0) {
      if (rep > this.posted) {
        throw new OracleFailure(
          "fault-report",
          `op ${k}: ${rep} fault(s) reported, ` +
            `${this.posted} event buffer(s) posted`,
        );
      }
      this.posted -= rep;
      this.pending.push({ bus, write });
    }
  }
  /** The driver drains the eventq (and re-posts every buffer it got back). */
  drain(k: number): void {
    if (this.s.queues === null) return;
    const got = this.s.queues.drainFaults();
    const want = this.pending.splice(0);
    const show = (f: { bus: number; write: boolean }[]) =>
      f.map((x) => `${x.write ? "W" : "R"}@${x.bus}`).join(",");
    const seen = got.map((r) => ({ bus: Number(r.address), write: (r.flags & 2) !== 0 }));
    if (show(seen) !== show(want)) {
      throw new OracleFailure(
        "fault-report",
        `op ${k}: drained [${show(seen)}], reported [${show(want)}]`,
      );
    }
    this.posted += got.length;
  }
}

/** Corrupts the eventq ring as a hostile driver would, then takes a fault (see the module). */
function hostileEventq(
  s: Stack,
  mem: GuestMemory,
  faults: FaultBook,
  h: { kind: number; value: number },
  out: DmaTranslation,
): void {
  const q = s.queues;
  if (q === null || s.device.broken !== null) return;
  const a = q.eventq.addresses;
  const size = q.eventq.size;
  const kind = h.kind % 3;
  if (kind === 0) {
    const at = Number(a.driverAddr) + 2;
    mem.writeU16(at, (mem.readU16(at) + size + 1 + (h.value % 1000)) & 0xffff);
  } else {
    for (let i = 0; i < size; i++) {
      const d = Number(a.descAddr) + 16 * i;
      if (kind === 1) mem.writeU64(d, 0x4000_0000n + BigInt(h.value % 0x1000_0000));
      else {
        mem.writeU16(d + 12, mem.readU16(d + 12) | 1); // VIRTQ_DESC_F_NEXT
        mem.writeU16(d + 14, size + (h.value % 1000));
      }
    }
  }
  const breaks = kind === 0 || faults.posted > 0;
  const before = s.device.stats.faultsReported;
  try {
    s.space.translate(0x7_0000_0000, 4, DMA_ACCESS_READ, out);
    return; // no fault taken (nothing to check)
  } catch (e) {
    if (!(e instanceof DmaFault)) {
      throw new OracleFailure(
        "fault-report",
        `hostile eventq (kind ${kind}): the faulting translation threw ${e}`,
        e,
      );
    }
  }
  const broken: unknown = s.device.broken; // (narrowed to null above; the fault may set it)
  if (breaks && !(broken instanceof VirtqError)) {
    throw new OracleFailure(
      "fault-report",
      `hostile eventq (kind ${kind}): device not stopped (broken ${broken})`,
    );
  }
  if (breaks && s.device.stats.faultsReported !== before) {
    throw new OracleFailure("fault-report", `hostile eventq (kind ${kind}): fault reported`);
  }
}

/**
 * The negotiation drawn: each feature that changes the stack's behaviour declined in one input
 * of four (MAP_UNMAP, which stops every map, in one of twenty), `bypass` either way.
 */
const negotiationArbitrary: fc.Arbitrary<ViommuNegotiation> = fc.record({
  decline: fc.tuple(
    fc.constantFrom(
      ...[VIRTIO_IOMMU_F_PROBE, VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_F_INPUT_RANGE].flatMap(
        (b) => [b, -1, -1, -1],
      ),
    ),
    fc.constantFrom(VIRTIO_IOMMU_F_DOMAIN_RANGE, VIRTIO_IOMMU_F_MMIO, -1, -1),
    fc.constantFrom(VIRTIO_IOMMU_F_MAP_UNMAP, ...Array(19).fill(-1)),
    fc.constantFrom(VIRTIO_IOMMU_F_PROBE, -1, -1, -1),
  ).map((bits) => [...new Set(bits.filter((b) => b >= 0))]),
  bypass: fc.constantFrom(0 as const, 1 as const),
}, { noNullPrototype: true });

/** The `viommu-stack` target. */
export const viommuStackTarget: FuzzTarget<ViommuStackInput> = {
  name: "viommu-stack",
  description:
    "driver DmaApi + virtio-iommu + loopback queue, drawn feature negotiation: data intact, faults outside",
  arbitrary: () =>
    fc.record({
      negotiation: negotiationArbitrary,
      ops: opsArbitrary,
      longLivedPages: fc.constantFrom(0, 0, 1, 16),
      eventBuffers: fc.constantFrom(1, 2, 8),
      hostileEventq: fc.option(
        fc.record({ kind: fc.nat(2), value: fc.nat() }, { noNullPrototype: true }),
        { freq: 4 },
      ),
    }, { noNullPrototype: true }),
  run,
};

const opsArbitrary: fc.Arbitrary<ViommuStackOp[]> = fc.array(
  fc.oneof(
    fc.record({
      op: fc.constant("map" as const),
      off: fc.nat(BUF_SIZE),
      len: fc.integer({ min: 1, max: 3 * PAGE }),
      dir: fc.constantFrom<DmaDirection>(0, 1, 2),
    }, { noNullPrototype: true }),
    fc.record({ op: fc.constant("unmap" as const), pick: fc.nat() }, { noNullPrototype: true }),
    fc.integer({ min: 2, max: 4 }).chain((n) =>
      fc.record({
        op: fc.constant("mapBatch" as const),
        offs: fc.array(fc.nat(BUF_SIZE), { minLength: n, maxLength: n }),
        lens: fc.array(fc.integer({ min: 1, max: 3 * PAGE }), { minLength: n, maxLength: n }),
        dir: fc.constantFrom<DmaDirection>(0, 1, 2),
      }, { noNullPrototype: true })
    ),
    fc.record({ op: fc.constant("drain" as const) }, { noNullPrototype: true }),
    fc.record({
      op: fc.constant("loop" as const),
      src: fc.nat(),
      dst: fc.nat(),
      len: fc.integer({ min: 1, max: 3 * PAGE }),
      seed: fc.nat(255),
    }, { noNullPrototype: true }),
    fc.record({
      op: fc.constant("probe" as const),
      bus: fc.integer({ min: 0, max: 0x80000 }),
      near: fc.boolean(),
      write: fc.boolean(),
      edge: fc.boolean(),
    }, { noNullPrototype: true }),
  ),
  { minLength: 1, maxLength: 80, size: "max" },
);
