/**
 * Fuzz target `dma-chains`: hostile chains under every DMA mode. The device's address space and
 * the driver's `DmaApi` come from one mode `createDmaLab` builds (identity, dma-direct, offset
 * windows, IOMMU strict/lazy with IOTLBs of 1 to 64 entries, pass-through, swiotlb, confidential
 * guests with and without an IOMMU, a window in front of an IOMMU); the rings are mapped
 * coherent, the buffers streaming, and each descriptor is one of:
 *
 * - a mapping in the right direction (device-readable: `DMA_TO_DEVICE`, writable:
 *   `DMA_FROM_DEVICE`), possibly crossing pages;
 * - a mapping in the **wrong** direction (a writable descriptor over a `DMA_TO_DEVICE` mapping);
 * - a buffer that crosses from one IOVA page to the next where the two pages were mapped
 *   separately, to **scattered** GPAs;
 * - a mapping **unmapped while in flight** (after the chain was made available, before the pop);
 * - a garbage bus address (below 4 GiB, in the MSI window, at 2^40, across 2^52, near 2^53).
 *
 * The oracle is the reference decoder (the chains as the driver wrote them) composed with a
 * reference translation built from the driver's own mappings (page by page, with permissions):
 * in an isolating mode (IOMMU) a descriptor whose bytes are not all inside live mappings allowing
 * the access must make the pop fail `DESC_BUFFER_FAULT` (a lazily unmapped one may still
 * translate), and every chain the reference accepts must pop with exactly the segments the
 * reference translation gives (byte for byte the buffer's contents for readable segments, bounce
 * modes included); in a non-isolating mode the accepted chains are checked the same way.
 * Oracles: `dma-outcome` (fault vs success), `dma-segments` (GPAs and lengths), `dma-data`
 * (bytes the device reads), `uncatalogued-throw`, `dma-view` (window-iommu: a buffer in the lower
 * half of RAM is mapped through the direct window, bus = 2 GiB + GPA).
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  createDmaLab,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DMA_FROM_DEVICE,
  DMA_MODE_NAMES,
  DMA_TO_DEVICE,
  type DmaApi,
  type DmaModeName,
  DmaTranslation,
  FakeClock,
} from "../../src/dma/mod.ts";
import {
  type Chain,
  SplitDeviceQueue,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqError,
  writeSplitDescriptor,
} from "../../src/virtio/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** The modes drawn (every `createDmaLab` mode). */
export const CHAIN_MODES: readonly DmaModeName[] = DMA_MODE_NAMES;
const ISOLATING = new Set<DmaModeName>(["iommu-strict", "iommu-lazy", "confidential-iommu"]);
const BOUNCE = new Set<DmaModeName>(["swiotlb", "confidential", "confidential-iommu"]);

/** One descriptor: kind 0 right direction, 1 wrong direction, 2 scattered pages, 3 unmapped in
 * flight, 4 garbage address. */
export type DescSpec = [kind: number, page: number, off: number, len: number, write: boolean];

/** Input of the `dma-chains` target. */
export interface DmaChainsInput {
  /** Index into {@link CHAIN_MODES}. */
  mode: number;
  /** IOTLB capacity. */
  iotlb: number;
  /** Chains of 1 to 4 descriptors. */
  chains: DescSpec[][];
}

const n = z.int().nonnegative();
/** zod schema of {@link DmaChainsInput}. */
export const DmaChainsInputSchema = z.strictObject({
  mode: n,
  iotlb: z.int().positive(),
  chains: z.array(z.array(z.tuple([n, n, n, z.int().positive(), z.boolean()])).min(1)).min(1),
});

const desc: fc.Arbitrary<DescSpec> = fc.tuple(
  fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.nat({ max: 4 }) }),
  fc.nat({ max: 200 }),
  fc.oneof(fc.constantFrom(0, 1, 4095, 4032), fc.nat({ max: 4095 })),
  fc.oneof(fc.constantFrom(1, 64, 4096, 4097, 8192, 9000), fc.integer({ min: 1, max: 6000 })),
  fc.boolean(),
);

const arb: fc.Arbitrary<DmaChainsInput> = fc.record({
  mode: fc.nat({ max: CHAIN_MODES.length - 1 }),
  iotlb: fc.constantFrom(1, 2, 4, 64),
  chains: fc.array(fc.array(desc, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
}, { noNullPrototype: true });

const SIZE = 32;
const BUF_BYTES = 512 * 1024;
const PATTERN = new Uint8Array(BUF_BYTES);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = (i * 7 + (i >> 12) * 13 + 1) & 255;

interface Page {
  gpa: number; // GPA of the page's first byte (the original buffer's, or -1 when bounced)
  perm: number; // 1 device may read, 2 device may write
}

/** The engine seam: the pop under test (tests plant a bug here). */
export interface DmaChainsEngine {
  /** Builds the device queue. */
  makeQueue(...args: ConstructorParameters<typeof SplitDeviceQueue>): { pop(): Chain | null };
}

const REAL: DmaChainsEngine = { makeQueue: (o) => new SplitDeviceQueue(o) };

/** A mapping the driver unmaps later: bus address, length (bytes), direction. */
interface Unmap {
  bus: number | bigint;
  len: number;
  dir: 0 | 1 | 2;
}

/**
 * Expected outcome of one descriptor: `fault` true = the pop must fault, false = must not, null
 * = either; `pieces` the reference translation ([gpa, len], non-bounce modes); `src` in bounce
 * modes the buffer's GPA (its bytes must reach the device), else -1.
 */
interface Expect {
  fault: boolean | null;
  pieces: [number, number][];
  src: number;
  len: number;
  write: boolean;
}

/** One run's DMA mode, memory and the driver's record of its own mappings. */
interface ChainsRun {
  readonly name: DmaModeName;
  readonly lab: ReturnType<typeof createDmaLab>;
  readonly api: DmaApi;
  readonly isolating: boolean;
  readonly bounce: boolean;
  /** GPA of the descriptor table (descriptors are written there: coherent, shared). */
  readonly ring: number;
  /** window-iommu: the direct window at bus 2 GiB covers GPAs below this. */
  readonly lowerHalf: number;
  /** Bus page -> what the driver mapped there. */
  readonly pages: Map<number, Page>;
  /** Mappings unmapped at the end, and those unmapped while in flight. */
  readonly toUnmap: Unmap[];
  readonly unmapLater: Unmap[];
}

function run(input: DmaChainsInput, engine: DmaChainsEngine): void {
  const name = CHAIN_MODES[input.mode % CHAIN_MODES.length];
  const lab = createDmaLab(name, {
    bufferSize: BUF_BYTES,
    ringSize: 64 * 1024,
    poolSize: 512 * 1024,
    iotlbCapacity: input.iotlb,
    clock: new FakeClock(),
  });
  const { mode, memory } = lab;
  const api: DmaApi = mode.api;
  // the driver's buffers hold a pattern (so bounced bytes can be compared)
  memory.write(0, PATTERN);
  // rings: coherent mappings
  const ring = lab.ringGpa;
  const descBus = api.mapCoherent(ring, 16 * SIZE);
  const availBus = api.mapCoherent(ring + 0x1000, 6 + 2 * SIZE);
  const usedBus = api.mapCoherent(ring + 0x2000, 6 + 8 * SIZE);
  // window-iommu (docs/DMA_MODES.md): a direct window at bus 2 GiB over the lower half of RAM;
  // a buffer inside it is served by the window, never by the scatter-gather IOMMU.
  const regions = memory.regions;
  const r: ChainsRun = {
    name,
    lab,
    api,
    isolating: ISOLATING.has(name),
    bounce: BOUNCE.has(name),
    ring,
    lowerHalf: Math.floor((regions.length ? regions[regions.length - 1].end : 0) / 2 / 4096) *
      4096,
    pages: new Map(),
    toUnmap: [],
    unmapLater: [],
  };
  const chains = layChains(r, input.chains);
  if (chains === null) return;
  unmapInFlight(r);
  const dev = engine.makeQueue({
    memory,
    dma: mode.space,
    size: SIZE,
    addresses: { descAddr: descBus, driverAddr: availBus, deviceAddr: usedBus },
    features: 0n,
  });
  for (const [ci, exp] of chains.entries()) if (!checkPop(r, dev, ci, exp)) break;
  for (const u of r.toUnmap) api.unmap(u.bus, u.len, u.dir);
}

/** Maps a buffer through the driver's DmaApi and records its pages (oracle `dma-view`). */
function mapOne(r: ChainsRun, gpa: number, len: number, dir: 0 | 1 | 2): number | bigint {
  const bus = r.api.map(gpa, len, dir);
  if (r.name === "window-iommu" && gpa + len <= r.lowerHalf && bus !== 0x8000_0000 + gpa) {
    throw new OracleFailure(
      "dma-view",
      `window-iommu: buffer at GPA ${gpa} (+${len}) inside the direct window got bus ${bus}`,
    );
  }
  if (typeof bus === "number") {
    const perm = dir === DMA_TO_DEVICE ? 1 : dir === DMA_FROM_DEVICE ? 2 : 3;
    const first = Math.floor(bus / 4096), last = Math.floor((bus + len - 1) / 4096);
    for (let p = first; p <= last; p++) {
      r.pages.set(p, { gpa: r.bounce ? -1 : gpa - (bus - p * 4096), perm });
    }
  }
  return bus;
}

/**
 * Maps the drawn buffers, writes the chains into the descriptor table and makes them
 * available. @returns the expectations per chain, or null when a map was refused for lack of a
 * resource (pool, IOVA space): the run ends, nothing to pop.
 */
function layChains(r: ChainsRun, drawn: readonly DescSpec[][]): Expect[][] | null {
  const memory = r.lab.memory;
  const chains: Expect[][] = [];
  let next = 0;
  try {
    for (const specs0 of drawn) {
      // device-readable descriptors first (§2.7.4.2): structure is not what this target tests
      const specs = [...specs0].sort((a, b) => Number(a[4]) - Number(b[4]));
      const head = next;
      const exp: Expect[] = [];
      for (const [i, spec] of specs.entries()) {
        const [addr, e] = layDescriptor(r, spec);
        writeSplitDescriptor(
          memory,
          r.ring,
          next,
          addr,
          e.len,
          (e.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < specs.length ? VIRTQ_DESC_F_NEXT : 0),
          next + 1,
        );
        exp.push(e);
        next++;
      }
      // available ring entry
      memory.writeU16(r.ring + 0x1000 + 4 + 2 * (chains.length % SIZE), head);
      chains.push(exp);
    }
  } catch (e) {
    if (e instanceof OracleFailure) throw e;
    if (e instanceof Error && e.name === "DmaMapError") return null;
    throw e;
  }
  memory.writeU16(r.ring + 0x1000 + 2, chains.length);
  return chains;
}

/**
 * Maps one drawn descriptor's buffer (or draws a garbage address). @returns the descriptor's
 * bus address and what the pop must make of it.
 */
function layDescriptor(r: ChainsRun, spec: DescSpec): [number | bigint, Expect] {
  const [kind0, page, off, len0, write] = spec;
  const len = Math.min(len0, 8 * 4096);
  const gpa = Math.min(page * 4096 + off, BUF_BYTES - len);
  const dir: 0 | 1 | 2 = write ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
  const kind = kind0 % 5;
  const e: Expect = { fault: false, pieces: [], src: -1, len, write };
  if (kind === 2) {
    // two single pages mapped apart; the buffer crosses from the second IOVA page into
    // the first when the allocator put them next to each other (top-down)
    const k = Math.min(len, 2048);
    const gA = (page % 128) * 4096, gB = ((page * 37 + 64) % 120) * 4096;
    const busA = mapOne(r, gA, 4096, dir), busB = mapOne(r, gB, 4096, dir);
    r.toUnmap.push({ bus: busA, len: 4096, dir }, { bus: busB, len: 4096, dir });
    if (typeof busA === "number" && typeof busB === "number" && busA === busB + 4096) {
      e.pieces = [[gB + 4096 - k, k], [gA, k]];
      e.len = 2 * k;
      if (r.bounce) e.fault = null; // the two slots need not be adjacent
      return [busB + 4096 - k, e];
    }
    // not adjacent: a plain mapping in the right direction (kind 0)
  }
  if (kind === 4) {
    // below 4 GiB, 2^40, the MSI window, 1 GiB, across 2^52 (the bypass limit, beyond
    // every IOVA width), just below 2^53 (the largest exact number)
    const addr = [
      0x7fff_f000 + off,
      2 ** 40 + off,
      0xfee0_0000 + off,
      2 ** 30 + off,
      2 ** 52 - 2048 + off,
      2 ** 53 - 8192 + off,
    ][page % 6];
    e.fault = null; // unknown unless isolating and the address hits no live page
    if (r.isolating) {
      const p = Math.floor(addr / 4096), q = Math.floor((addr + len - 1) / 4096);
      let allMissing = true;
      for (let x = p; x <= q; x++) if (r.pages.has(x)) allMissing = false;
      if (allMissing) e.fault = true;
    }
    return [addr, e];
  }
  const mapDir: 0 | 1 | 2 = kind === 1 ? (write ? DMA_TO_DEVICE : DMA_FROM_DEVICE) : dir;
  const addr = mapOne(r, gpa, len, mapDir);
  (kind === 3 ? r.unmapLater : r.toUnmap).push({ bus: addr, len, dir: mapDir });
  e.pieces = r.bounce ? [] : [[gpa, len]];
  e.src = r.bounce ? gpa : -1;
  if (kind === 1 && r.isolating) e.fault = true;
  // window-iommu: a buffer inside the bypass window skips the IOMMU's permission check
  if (kind === 1 && r.name === "window-iommu") e.fault = null; // the IOMMU entry forbids this access
  if (kind === 3) e.fault = r.isolating && r.name !== "iommu-lazy" ? true : null;
  return [addr, e];
}

/**
 * Unmapped while in flight: the device had already touched the buffer (its IOTLB caches the
 * entry), then the driver unmaps it; a strict unmap must invalidate before returning.
 */
function unmapInFlight(r: ChainsRun): void {
  const touch = new DmaTranslation();
  for (const u of r.unmapLater) {
    try {
      r.lab.mode.space.translate(
        u.bus,
        1,
        u.dir === DMA_FROM_DEVICE ? DMA_ACCESS_WRITE : DMA_ACCESS_READ,
        touch,
      );
    } catch { /* not reachable: nothing cached */ }
    r.api.unmap(u.bus, u.len, u.dir);
    if (typeof u.bus === "number") {
      for (let p = Math.floor(u.bus / 4096); p <= Math.floor((u.bus + u.len - 1) / 4096); p++) {
        r.pages.delete(p);
      }
    }
  }
}

/**
 * Pops chain `ci` and checks the outcome (oracle `dma-outcome`) and, when every descriptor is
 * known, its segments and data. @returns false when the pop faulted as allowed (the queue is
 * broken: the run ends).
 */
function checkPop(
  r: ChainsRun,
  dev: { pop(): Chain | null },
  ci: number,
  exp: Expect[],
): boolean {
  const name = r.name;
  const mustFault = exp.some((e) => e.fault === true);
  const mayFault = exp.some((e) => e.fault === null);
  let got: Chain | null;
  try {
    got = dev.pop();
  } catch (e) {
    if (!(e instanceof VirtqError)) {
      throw new OracleFailure("uncatalogued-throw", `pop ${ci} (${name}) threw ${e}`, e);
    }
    if (!mustFault && !mayFault) {
      throw new OracleFailure(
        "dma-outcome",
        `${name}: chain ${ci} of mapped buffers faulted: ${e.message}`,
        e,
      );
    }
    if (e.code !== "DESC_BUFFER_FAULT") {
      throw new OracleFailure(
        "dma-outcome",
        `${name}: chain ${ci} failed ${e.code}, not DESC_BUFFER_FAULT`,
        e,
      );
    }
    return false;
  }
  if (got === null) throw new OracleFailure("dma-outcome", `${name}: chain ${ci} not popped`);
  if (mustFault) {
    throw new OracleFailure(
      "dma-outcome",
      `${name}: chain ${ci} popped although a descriptor is ${
        exp.find((e) => e.fault === true) === undefined
          ? "?"
          : "unmapped, garbage or mapped in the other direction"
      }`,
    );
  }
  if (!mayFault) checkChainData(r, ci, got, exp); // unknown descriptors: outcome only
  return true;
}

/**
 * A popped chain's readable bytes and writable segments against the reference translation
 * (oracles `dma-data`, `dma-segments`).
 */
function checkChainData(r: ChainsRun, ci: number, got: Chain, exp: Expect[]): void {
  const name = r.name;
  const readBytes: number[] = [];
  for (let i = 0; i < got.readableCount; i++) {
    const b = new Uint8Array(got.readableLen[i]);
    r.lab.memory.read(got.readableGpa[i], b);
    for (const x of b) readBytes.push(x);
  }
  const wantRead: number[] = [];
  const wantW: [number, number][] = [];
  let wantWritable = 0;
  for (const e of exp) {
    if (e.write) {
      wantW.push(...e.pieces);
      wantWritable += e.len;
    } else if (e.src >= 0) {
      for (let k = 0; k < e.len; k++) wantRead.push(PATTERN[e.src + k]);
    } else {
      for (const [g, l] of e.pieces) for (let k = 0; k < l; k++) wantRead.push(PATTERN[g + k]);
    }
  }
  if (readBytes.length !== wantRead.length || readBytes.some((x, i) => x !== wantRead[i])) {
    throw new OracleFailure(
      "dma-data",
      `${name}: chain ${ci}: the device read ${readBytes.length} bytes, the driver's buffers hold ` +
        `${wantRead.length}, first difference at byte ${
          readBytes.findIndex((x, i) => x !== wantRead[i])
        }`,
    );
  }
  const gotW: [number, number][] = [];
  for (let i = 0; i < got.writableCount; i++) gotW.push([got.writableGpa[i], got.writableLen[i]]);
  if (got.writableBytes !== wantWritable || (!r.bounce && norm(gotW) !== norm(wantW))) {
    throw new OracleFailure(
      "dma-segments",
      `${name}: chain ${ci}: writable segments ${norm(gotW)} (${got.writableBytes} bytes), ` +
        `the reference translation gives ${norm(wantW)} (${wantWritable} bytes)`,
    );
  }
}

/** Segments merged where contiguous, as text. */
function norm(xs: [number, number][]): string {
  const out: [number, number][] = [];
  for (const [g, l] of xs) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === g) last[1] += l;
    else if (l > 0) out.push([g, l]);
  }
  return JSON.stringify(out);
}

/** Planted bugs. */
export const DMA_CHAINS_FAULTS = ["dma-view-ignored"] as const;

/**
 * Builds the target over `engine`.
 * @param engine the device queue factory.
 */
export function makeDmaChainsTarget(engine: DmaChainsEngine = REAL): FuzzTarget<DmaChainsInput> {
  return {
    name: "dma-chains",
    description:
      "hostile chains under every DMA mode: scattered IOVA pages, wrong directions, unmapped in flight, garbage addresses, checked against a reference translation",
    arbitrary: () => arb,
    run: (input) => run(input, engine),
    encode: (input) => input,
    decode: (json) => DmaChainsInputSchema.parse(json) as DmaChainsInput,
    plantedFaults: DMA_CHAINS_FAULTS,
    withPlantedFault: (fault) => {
      if (fault !== "dma-view-ignored") throw new Error(`unknown planted fault ${fault}`);
      // a device that checks the first page of each buffer only (the rest taken as contiguous)
      return makeDmaChainsTarget({
        makeQueue: (o) => {
          const inner = o.dma;
          return new SplitDeviceQueue({
            ...o,
            dma: {
              name: inner.name,
              translate: (bus, len, acc, out) => {
                inner.translate(bus, 1, acc, out);
                out.length = len;
              },
            },
          });
        },
      });
    },
  };
}

/** The registered instance. */
export const dmaChainsTarget: FuzzTarget<DmaChainsInput> = makeDmaChainsTarget();
