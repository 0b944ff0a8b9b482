/**
 * Hostile queue ACTIVATION for the hostile-driver targets: the driver programs a Queue Size and
 * ring area addresses (spec §4.1.4.3 `queue_size`, `queue_desc`, `queue_driver`, `queue_device`)
 * and the device activates the queue. Sizes include 0, non-powers of 2 (split) and > 32768;
 * addresses include misaligned ones, areas across a memory region boundary or past the end of
 * memory, and, behind an IOMMU (`src/dma/iommu.ts`, one paged domain with 4 KiB mappings), areas
 * across an IOVA page boundary whose pages map to non-contiguous GPAs or are unmapped, and,
 * through an offset DMA window (`src/dma/window.ts`), aligned bus addresses that translate to
 * unaligned GPAs (`RING_MISALIGNED` after translation) or run past the window.
 *
 * Before activating, the driver negotiates random feature sets (`negotiateFeatures`,
 * `deviceAddressing`, `driverUsesDmaApi` checked against the spec §2.2 / §6 rules; oracle
 * `negotiation`) and may place the areas with the layout helpers (`splitRingLayout`,
 * `vringSize`, `packedRingLayout`; oracle `layout`).
 *
 * Oracle: the device queue's constructor either succeeds exactly when an independent reference
 * (written here from the spec's rules, §2.6 / §2.7 / §2.8 alignment and size tables) accepts the
 * configuration, or throws the catalogued `VirtqError` the reference predicts
 * (`QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`), and for `RING_UNMAPPED` with the
 * predicted cause (`DmaFault` reason `unmapped` / `not-contiguous`, or a `MemoryFault`).
 * @module
 */

import fc from "fast-check";
import {
  deviceAddressing,
  DmaFault,
  driverUsesDmaApi,
  type GuestMemory,
  IdentityAddressSpace,
  Iommu,
  IOPTE_READ,
  IOPTE_WRITE,
  isPackedDescAvail,
  isPackedDescUsed,
  MemoryFault,
  negotiateFeatures,
  packedAvailFlags,
  PackedDeviceQueue,
  packedEventOffWrap,
  packedNeedEvent,
  packedRingLayout,
  packedUsedFlags,
  splitAvailEventOffset,
  SplitDeviceQueue,
  splitRingLayout,
  splitUsedEventOffset,
  VirtqError,
  vringSize,
  WindowAddressSpace,
} from "../../src/mod.ts";
import type { DmaAddressSpace } from "../../src/dma/mod.ts";
import type { RingLayout } from "../../src/virtio/mod.ts";
import { z } from "zod";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** First IOVA of the IOMMU window a test maps (page k of `pages` is at `IOVA_BASE + 4096k`). */
export const IOVA_BASE = 0x10_0000;
/** Bus address of the DMA window a test may put in front of memory (bus `WINDOW_BUS + x` reaches
 * GPA `shift + x` for `x` below the memory's end). */
export const WINDOW_BUS = 0x4000_0000;

/** One hostile activation. */
export interface ActivationInput {
  /** Queue Size the driver wrote. */
  size: number;
  /** Bus addresses of the descriptor area, driver area and device area. */
  desc: number;
  /** Driver area (split: available ring; packed: driver event suppression). */
  driver: number;
  /** Device area (split: used ring; packed: device event suppression). */
  device: number;
  /**
   * `null`: identity DMA (bus = GPA). Otherwise the device sits behind an IOMMU whose domain
   * maps IOVA page k to GPA page `pages[k]` (read + write), or leaves it unmapped when -1.
   */
  iommu: { pages: number[] } | null;
  /**
   * When set (and `iommu` is null), the device reaches memory through one offset window
   * (`src/dma/window.ts`): bus `WINDOW_BUS + x` is GPA `shift + x` for `x` below the end of
   * memory, anything else faults `out-of-window`. A `shift` that is not a multiple of an area's
   * alignment moves an aligned bus address to an unaligned GPA (RING_MISALIGNED after
   * translation, §2.6).
   */
  window?: { shift: number } | null;
  /**
   * When set, the three areas are placed in one block at `desc` by the layout helpers
   * (`splitRingLayout(size, block)` with `block` the used ring alignment, e.g. 4096 for the
   * legacy `vring_size` layout; `packedRingLayout(size, false)`), overriding `driver`/`device`.
   */
  block: number | null;
  /**
   * Feature negotiation before activation (spec §2.2, §3.1.1, §6 ACCESS_PLATFORM rules): bits
   * as hex strings; the negotiated features are the queue's.
   */
  negotiation: {
    offered: string;
    wanted: string;
    deviceRequiresAccessPlatform: boolean;
    driverRequiresAccessPlatform: boolean;
    xen: boolean;
  };
}

type Prediction = { code: "OK" } | { code: string; cause?: string };

/** What the reference predicts (first failing check, in the engine's documented order). */
export function predictActivation(
  layout: RingLayout,
  memory: GuestMemory,
  a: ActivationInput,
): Prediction {
  const s = a.size;
  const sizeOk = layout === "split"
    ? Number.isInteger(s) && s >= 1 && s <= 32768 && (s & (s - 1)) === 0 // §2.7
    : Number.isInteger(s) && s >= 1 && s <= 32768; // §2.8
  if (!sizeOk) return { code: "QUEUE_SIZE_INVALID" };
  const areas: [number, number, number][] = layout === "split"
    ? [[a.desc, 16 * s, 16], [a.driver, 6 + 2 * s, 2], [a.device, 6 + 8 * s, 4]]
    : [[a.desc, 16 * s, 16], [a.driver, 4, 4], [a.device, 4, 4]];
  for (const [bus, len, align] of areas) {
    if (bus % align !== 0) return { code: "RING_MISALIGNED" };
    let gpa = bus;
    if (a.iommu === null && a.window != null) {
      const off = bus - WINDOW_BUS, size = memEndOf(memory);
      if (off < 0 || off >= size) {
        return { code: "RING_UNMAPPED", cause: "DMA_FAULT(out-of-window)" };
      }
      if (off + len > size) return { code: "RING_UNMAPPED", cause: "DMA_FAULT(not-contiguous)" };
      gpa = a.window.shift + off;
    } else if (a.iommu !== null) {
      const p = a.iommu.pages;
      const k = Math.floor((bus - IOVA_BASE) / 4096);
      if (bus < IOVA_BASE || k >= p.length || p[k] < 0) {
        return { code: "RING_UNMAPPED", cause: "DMA_FAULT(unmapped)" };
      }
      const off = (bus - IOVA_BASE) % 4096;
      gpa = p[k] * 4096 + off;
      let run = 4096 - off;
      for (let j = k + 1; run < len && j < p.length && p[j] >= 0 && p[j] === p[j - 1] + 1; j++) {
        run += 4096;
      }
      if (run < len) return { code: "RING_UNMAPPED", cause: "DMA_FAULT(not-contiguous)" };
    }
    const inOne = memory.regions.some((r) => gpa >= r.gpa && gpa + len <= r.end);
    if (!inOne) return { code: "RING_UNMAPPED", cause: "MEMORY_FAULT" };
    // §2.6: the alignment is the GPA's, which a translation may change
    if (gpa % align !== 0) return { code: "RING_MISALIGNED" };
  }
  return { code: "OK" };
}

const memEndOf = (memory: GuestMemory): number => memory.regions[memory.regions.length - 1].end;

function causeOf(e: VirtqError): string {
  const c = e.cause;
  if (c instanceof DmaFault) return `DMA_FAULT(${c.reason})`;
  if (c instanceof MemoryFault) return "MEMORY_FAULT";
  return String(c);
}

const AP = 1n << 33n, V1 = 1n << 32n;

/**
 * Negotiates as the input says and checks `negotiateFeatures`, `deviceAddressing` and
 * `driverUsesDmaApi` against the spec's rules. @returns the negotiated features.
 */
function checkNegotiation(n: ActivationInput["negotiation"]): bigint {
  const offered = BigInt(`0x${n.offered}`), wanted = BigInt(`0x${n.wanted}`);
  const r = negotiateFeatures(offered, wanted, {
    deviceRequiresAccessPlatform: n.deviceRequiresAccessPlatform,
    driverRequiresAccessPlatform: n.driverRequiresAccessPlatform,
  });
  const accepted = offered & wanted; // §2.2.1: never a bit the device did not offer
  const refusedBy = n.deviceRequiresAccessPlatform && (offered & AP) !== 0n &&
      (accepted & AP) === 0n
    ? "device" // §6.2 MAY refuse FEATURES_OK
    : n.driverRequiresAccessPlatform && (accepted & (AP | V1)) !== (AP | V1)
    ? "driver" // restricted memory access: Linux virtio_features_ok
    : undefined;
  const negotiated = refusedBy === undefined ? accepted : 0n;
  if (
    r.accepted !== accepted || r.ok !== (refusedBy === undefined) || r.refusedBy !== refusedBy ||
    r.negotiated !== negotiated || (r.ok !== (r.reason === undefined))
  ) {
    throw new OracleFailure(
      "negotiation",
      `offered ${n.offered} wanted ${n.wanted}: got ${
        JSON.stringify(r, (_k, v) => typeof v === "bigint" ? v.toString(16) : v)
      }`,
    );
  }
  const ap = (negotiated & AP) !== 0n;
  if (deviceAddressing(negotiated) !== (ap ? "platform" : "raw-gpa")) {
    throw new OracleFailure("negotiation", `deviceAddressing wrong for ${negotiated}`);
  }
  if (driverUsesDmaApi(negotiated, n.xen) !== (ap || n.xen)) {
    throw new OracleFailure("negotiation", `driverUsesDmaApi wrong for ${negotiated}`);
  }
  return negotiated;
}

/**
 * The packed flag and event helpers against §2.8.1 / §2.8.10 (avail/used bits vs the wrap
 * counter, off_wrap packing, need-event) for descriptor flags `f` and event offset `off`.
 */
function checkPackedFlags(f: number, off: number, size: number): void {
  const A = 1 << 7, U = 1 << 15;
  for (const w of [0, 1]) {
    const a = (f >> 7) & 1, u = (f >> 15) & 1;
    if (
      packedAvailFlags(w) !== (w ? A : U) || packedUsedFlags(w) !== (w ? A | U : 0) ||
      isPackedDescAvail(f, w) !== (a !== u && a === w) ||
      isPackedDescUsed(f, w) !== (a === u && u === w) ||
      packedEventOffWrap(off, w) !== (off | (w << 15))
    ) throw new OracleFailure("layout", `packed flag helpers wrong for flags ${f}, wrap ${w}`);
    // §2.8.10: notify when the event offset (in the driver's lap) lies in (old, new]
    const now = (off + 1) % size, ev = off % size;
    const need = packedNeedEvent(packedEventOffWrap(ev, w), now, 1, w, size);
    if (need !== (now === ev + 1)) {
      throw new OracleFailure("layout", `packedNeedEvent(${ev}, now ${now}, wrap ${w}) = ${need}`);
    }
  }
}

/** Places the areas in one block (when `a.block` is set), checking the layout helpers. */
function placeBlock(layout: RingLayout, a: ActivationInput): ActivationInput {
  if (a.block === null) return a;
  const s = a.size;
  const valid = layout === "split"
    ? Number.isInteger(s) && s >= 1 && s <= 32768 && (s & (s - 1)) === 0
    : Number.isInteger(s) && s >= 1 && s <= 32768;
  let offs: [number, number];
  try {
    if (layout === "split") {
      const l = splitRingLayout(s, a.block);
      // §2.7: desc 16·size, avail 6 + 2·size, used ring at the next multiple of the alignment
      const used = Math.ceil((16 * s + 6 + 2 * s) / a.block) * a.block;
      if (
        l.descOffset !== 0 || l.availOffset !== 16 * s || l.usedOffset !== used ||
        l.totalBytes !== used + 6 + 8 * s ||
        (a.block === 4096 && vringSize(s, 4096) !== l.totalBytes)
      ) {
        throw new OracleFailure(
          "layout",
          `splitRingLayout(${s}, ${a.block}) = ${JSON.stringify(l)}`,
        );
      }
      // §2.7.10: used_event after the avail ring entries, avail_event after the used elements
      if (splitUsedEventOffset(s) !== 4 + 2 * s || splitAvailEventOffset(s) !== 4 + 8 * s) {
        throw new OracleFailure("layout", `split event offsets wrong for size ${s}`);
      }
      offs = [l.availOffset, l.usedOffset];
    } else {
      const l = packedRingLayout(s, false);
      // §2.8: descriptor ring 16·size, then the two 4-byte event suppression structures
      if (
        l.descBytes !== 16 * s || l.driverEventOffset !== 16 * s ||
        l.deviceEventOffset !== 16 * s + 4 || l.ringBytes !== 16 * s + 8
      ) throw new OracleFailure("layout", `packedRingLayout(${s}) = ${JSON.stringify(l)}`);
      checkPackedFlags(a.desc & 0xffff, a.device & 0x7fff, s);
      offs = [l.driverEventOffset, l.deviceEventOffset];
    }
  } catch (e) {
    if (e instanceof OracleFailure) throw e;
    if (valid || !(e instanceof RangeError)) {
      throw new OracleFailure("layout", `${layout} layout of size ${s} threw ${e}`, e);
    }
    return a; // invalid size: the activation below must say QUEUE_SIZE_INVALID
  }
  if (!valid) throw new OracleFailure("layout", `${layout} layout accepted size ${s}`);
  return { ...a, driver: a.desc + offs[0], device: a.desc + offs[1] };
}

/**
 * Activates a device queue of `layout` on `memory` with a hostile configuration and checks the
 * outcome against {@link predictActivation}.
 * @throws OracleFailure `activation-mismatch` / `activation-uncatalogued`.
 */
export function checkActivation(
  layout: RingLayout,
  memory: GuestMemory,
  a: ActivationInput,
): void {
  const features = checkNegotiation(a.negotiation);
  a = placeBlock(layout, a);
  const want = predictActivation(layout, memory, a);
  let dma: DmaAddressSpace = new IdentityAddressSpace();
  if (a.iommu !== null) {
    const iommu = new Iommu(memory);
    const domain = iommu.createDomain("paged");
    a.iommu.pages.forEach((g, k) => {
      if (g >= 0) iommu.map(domain, IOVA_BASE + 4096 * k, 4096 * g, 4096, IOPTE_READ | IOPTE_WRITE);
    });
    dma = iommu.endpoint(domain);
  } else if (a.window != null) {
    dma = new WindowAddressSpace([
      { cpuStart: a.window.shift, busStart: WINDOW_BUS, size: memEndOf(memory) },
    ]);
  }
  const opts = {
    memory,
    dma,
    size: a.size,
    addresses: { descAddr: a.desc, driverAddr: a.driver, deviceAddr: a.device },
    features,
  };
  let got: Prediction;
  try {
    if (layout === "split") new SplitDeviceQueue(opts);
    else new PackedDeviceQueue(opts);
    got = { code: "OK" };
  } catch (e) {
    if (!(e instanceof VirtqError)) {
      throw new OracleFailure("activation-uncatalogued", `activation threw ${e}`, e);
    }
    got = e.code === "RING_UNMAPPED" ? { code: e.code, cause: causeOf(e) } : { code: e.code };
  }
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new OracleFailure(
      "activation-mismatch",
      `${layout} size ${a.size} desc ${a.desc} driver ${a.driver} device ${a.device} ${
        a.iommu !== null
          ? `iommu pages [${a.iommu.pages}]`
          : a.window != null
          ? `window shift ${a.window.shift}`
          : "identity"
      }: got ${JSON.stringify(got)}, reference ${JSON.stringify(want)}`,
    );
  }
}

/**
 * Activation inputs for a memory of `memEnd` bytes: sizes at and around the limits, addresses
 * mostly aligned, near region and page boundaries, identity or IOMMU.
 */
export function activationArbitrary(
  layout: RingLayout,
  memEnd: number,
): fc.Arbitrary<ActivationInput> {
  const size = fc.oneof(
    {
      // valid sizes: powers of 2 (split, §2.7), any 1..32768 (packed, §2.8)
      arbitrary: layout === "split"
        ? fc.constantFrom(1, 2, 4, 8, 16, 64, 256, 1024, 32768)
        : fc.constantFrom(1, 3, 5, 16, 100, 255, 1024, 32767, 32768),
      weight: 3,
    },
    { arbitrary: fc.constantFrom(0, 3, 6, 12, 100, 255, 32769, 40000, 65535, 65536), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 70000 }), weight: 1 },
  );
  const pages = Math.ceil(memEnd / 4096) + 2;
  const mis = fc.constantFrom(0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 8, 12);
  const addr = (iommu: boolean, base = iommu ? IOVA_BASE : 0) =>
    fc.tuple(fc.nat(iommu ? 8 * 4096 : memEnd + 0x2000), mis).map(([n, m]) => base + (n & ~15) + m);
  const bits = fc.array(
    fc.constantFrom(0, 5, 24, 27, 28, 29, 32, 32, 33, 33, 34, 35, 36, 38, 40, 41, 63),
    { maxLength: 8 },
  ).map((bs) => bs.reduce((m, b) => m | (1n << BigInt(b)), 0n).toString(16));
  const negotiation = fc.record({
    offered: bits,
    wanted: bits,
    deviceRequiresAccessPlatform: fc.boolean(),
    driverRequiresAccessPlatform: fc.boolean(),
    xen: fc.boolean(),
  }, { noNullPrototype: true });
  const block = fc.option(fc.constantFrom(2, 4, 16, 64, 4096), { freq: 3 });
  const identity = fc.record({
    size,
    desc: addr(false),
    driver: addr(false),
    device: addr(false),
    iommu: fc.constant(null),
    block,
    negotiation,
  }, { noNullPrototype: true });
  const behindIommu = fc.record({
    size,
    desc: addr(true),
    driver: addr(true),
    device: addr(true),
    iommu: fc.record({
      pages: fc.array(
        fc.oneof(
          { arbitrary: fc.integer({ min: 0, max: pages }), weight: 4 },
          { arbitrary: fc.constant(-1), weight: 1 },
        ),
        { minLength: 1, maxLength: 8 },
      ).chain((ps) =>
        // mostly consecutive runs (contiguous GPAs), sometimes scattered
        fc.boolean().map((scatter) => scatter ? ps : ps.map((_, i) => ps[0] < 0 ? -1 : ps[0] + i))
      ),
    }, { noNullPrototype: true }),
    block,
    negotiation,
  }, { noNullPrototype: true });
  // bus addresses mostly aligned (their alignment is checked before translation)
  const addrW = fc.tuple(fc.nat(memEnd + 0x2000), fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 4)).map((
    [n, m],
  ) => WINDOW_BUS + (n & ~15) + m);
  const throughWindow = fc.record({
    // mostly small valid sizes (powers of 2: valid for both layouts) whose rings fit in memory
    size: fc.oneof(
      { arbitrary: fc.constantFrom(1, 2, 4, 16, 64, 256), weight: 4 },
      { arbitrary: size, weight: 1 },
    ),
    desc: addrW,
    driver: addrW,
    device: addrW,
    iommu: fc.constant(null),
    // mostly a shift no area's alignment divides: the GPA check after translation is the point
    window: fc.record({ shift: fc.constantFrom(2, 4, 8, 12, 0x1004, 0x1008, 0, 16, 0x1000) }),
    block,
    negotiation,
  }, { noNullPrototype: true });
  return fc.oneof(
    { arbitrary: identity, weight: 2 },
    { arbitrary: behindIommu, weight: 2 },
    { arbitrary: throughWindow, weight: 3 },
  );
}

/** A hostile-driver input that is a hostile activation. */
export interface ActivationOnlyInput {
  /** The configuration the driver programs. */
  activation: ActivationInput;
}

const activationSchema = z.strictObject({
  activation: z.strictObject({
    size: z.int().min(0),
    desc: z.int().min(0),
    driver: z.int().min(0),
    device: z.int().min(0),
    iommu: z.strictObject({ pages: z.array(z.int().min(-1)).min(1).max(64) }).nullable(),
    window: z.strictObject({ shift: z.int().min(0).max(2 ** 40) }).nullable().optional(),
    block: z.int().positive().nullable(),
    negotiation: z.strictObject({
      offered: z.string().regex(/^[0-9a-f]+$/),
      wanted: z.string().regex(/^[0-9a-f]+$/),
      deviceRequiresAccessPlatform: z.boolean(),
      driverRequiresAccessPlatform: z.boolean(),
      xen: z.boolean(),
    }),
  }),
});

function isActivation(x: unknown): x is ActivationOnlyInput {
  return typeof x === "object" && x !== null && "activation" in x;
}

/**
 * Wraps a hostile-driver target so that one input in `1 + baseWeight` is a hostile activation
 * of a `layout` device queue on `memory` (checked by {@link checkActivation}; one unit of work
 * each). Corpus format, `describe` and planted faults of the base are kept for its own inputs.
 */
export function withActivation<I>(
  base: FuzzTarget<I>,
  layout: RingLayout,
  memory: GuestMemory,
  baseWeight = 9,
): FuzzTarget<I | ActivationOnlyInput> {
  const memEnd = memory.regions[memory.regions.length - 1].end;
  let activations = 0;
  const w: FuzzTarget<I | ActivationOnlyInput> = {
    name: base.name,
    description: base.description,
    arbitrary: () =>
      fc.oneof(
        {
          arbitrary: base.arbitrary() as fc.Arbitrary<I | ActivationOnlyInput>,
          weight: baseWeight,
        },
        {
          arbitrary: activationArbitrary(layout, memEnd).map((activation) => ({ activation })),
          weight: 1,
        },
      ),
    run: (input) => {
      if (isActivation(input)) {
        activations++;
        checkActivation(layout, memory, input.activation);
      } else base.run(input);
    },
    plantedFaults: base.plantedFaults,
    ...(base.workUnit !== undefined && base.workDone !== undefined
      ? { workUnit: base.workUnit, workDone: () => base.workDone!() + activations }
      : {}),
  };
  if (base.encode !== undefined && base.decode !== undefined) {
    const enc = base.encode.bind(base), dec = base.decode.bind(base);
    w.encode = (i) => isActivation(i) ? structuredClone(i) : enc(i);
    w.decode = (j) => isActivation(j) ? activationSchema.parse(j) : dec(j);
  }
  if (base.describe !== undefined) {
    const d = base.describe.bind(base);
    w.describe = (i) => isActivation(i) ? `activation ${JSON.stringify(i.activation)}` : d(i);
  }
  if (base.withPlantedFault !== undefined) {
    const p = base.withPlantedFault.bind(base);
    w.withPlantedFault = (f) => withActivation(p(f), layout, memory, baseWeight);
  }
  return w;
}
