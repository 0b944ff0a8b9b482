/**
 * Fuzz target `dma-modes`: draws a DMA mode and a sequence of driver operations (map, unmap,
 * sync, time passing) and device accesses, and checks three oracles:
 *
 * - `data-integrity`: with consistent views, every byte the driver mapped arrives intact at the
 *   device, and every byte the device wrote into a live mapping is what the driver sees after
 *   sync/unmap (bounce modes included);
 * - `isolation`: in an IOMMU mode, a device access to a bus page outside every live mapping
 *   faults with a `DmaFault`, except inside the lazy-invalidation window (`mode.isStale`), where
 *   a successful stale access is **reported** (counted), not a failure; in a confidential mode a
 *   device access to private memory faults `private-memory`; unmapping a dead mapping in a
 *   tracking mode throws `not-mapped`;
 * - `page-table`: an I/O page table mapping with 2 MiB / 1 GiB leaves, cut by a partial unmap,
 *   translates exactly like a byte model (`page_table_op.ts`);
 * - `iotlb-model`: an IOTLB (4 KiB / 2 MiB / 1 GiB entries, a small capacity that overflows)
 *   answers every lookup and invalidation (page + mask, range, domain, all) like a plain model
 *   (`iotlb_op.ts`);
 * - `flush-queue-model`: the lazy flush queue flushes by count and by (fake-clock) time exactly
 *   like Linux's rules (`flush_queue_op.ts`);
 * - `dma-direct-model`: dma-direct honours the DMA mask and bus limit and refuses coherent maps
 *   of private memory (`direct_op.ts`);
 * - `swiotlb-model`: a small bounce pool maps, partially syncs both ways, runs out and copies
 *   back exactly like a byte model of Linux's swiotlb (`swiotlb_op.ts`);
 * - `edge-outcome`: each edge operation (`dma_edges.ts`: no dma-ranges window, swiotlb pool
 *   exhausted, IOVA space exhausted, private memory, reserved region, overlap, misaligned GPA,
 *   virtio-iommu transport error) fails with exactly its `DmaMapError` reason;
 * - `uncatalogued-throw`: nothing throws outside the catalogue (DmaFault, DmaMapError,
 *   MemoryFault), and a live mapping's unmap/sync never fails.
 *
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  createDmaLab,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DMA_MODE_NAMES,
  type DmaDirection,
  DmaFault,
  type DmaLab,
  DmaMapError,
  type DmaMode,
  type DmaModeName,
  DmaTranslation,
  FakeClock,
} from "../../src/dma/mod.ts";
import { type GuestMemory, MemoryFault, type U64 } from "../../src/memory/mod.ts";
import { noteError } from "../observe.ts";
import { DMA_EDGE_KINDS, runDmaEdge } from "../support/dma_edges.ts";
import { type PageTableOp, runPageTableOp } from "../support/dma_ops/page_table_op.ts";
import {
  DIRECT_BUS_LIMITS,
  DIRECT_GPAS,
  DIRECT_LENGTHS,
  DIRECT_MASKS,
  type DirectOp,
  runDirectOp,
} from "../support/dma_ops/direct_op.ts";
import {
  type FlushQueueOp,
  FQ_SIZES,
  FQ_STEP_KINDS,
  FQ_TIMEOUTS,
  runFlushQueueOp,
} from "../support/dma_ops/flush_queue_op.ts";
import { runSwiotlbOp, SWIOTLB_STEP_KINDS, type SwiotlbOp } from "../support/dma_ops/swiotlb_op.ts";
import {
  IOTLB_CAPACITIES,
  IOTLB_STEP_KINDS,
  type IotlbOp,
  runIotlbOp,
} from "../support/dma_ops/iotlb_op.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** One step of a {@link DmaModesInput}. */
export type DmaOp =
  | { k: "map"; slot: number; off: number; len: number; dir: DmaDirection }
  | { k: "unmap"; which: number }
  | { k: "sync"; which: number; toCpu: boolean }
  | { k: "read"; which: number; off: number; len: number }
  | { k: "write"; which: number; off: number; len: number }
  | { k: "probe"; page: number; off: number; write: boolean }
  | { k: "dead"; which: number; off: number; unmap: boolean }
  | { k: "tick"; ms: number }
  | { k: "hostile"; kind: number }
  | { k: "edge"; kind: number; n: number }
  | ({ k: "pagetable" } & PageTableOp)
  | ({ k: "iotlb" } & IotlbOp)
  | ({ k: "flushq" } & FlushQueueOp)
  | ({ k: "direct" } & DirectOp)
  | ({ k: "swiotlb" } & SwiotlbOp);

/** Input of the `dma-modes` target. */
export interface DmaModesInput {
  /** The DMA mode. */
  mode: DmaModeName;
  /** Operations, in order. */
  ops: DmaOp[];
}

/** Counters of one run, for reports (and tests). */
export interface DmaModesReport {
  /** Device accesses that succeeded through a stale IOTLB entry (lazy window), not failures. */
  staleAccesses: number;
  /** Device accesses that faulted, as expected. */
  faults: number;
  /** Accesses inside a live mapping's pages but outside its bytes (sub-page exposure). */
  subPageExposures: number;
  /** Maps refused with a catalogued reason (pool/IOVA exhaustion). */
  mapRefusals: number;
  /** Bytes checked end to end. */
  bytesChecked: number;
  /**
   * syncForDevice calls in bounce modes that overwrote device writes the CPU had not synced
   * (the DMA API's ownership rule: the CPU's copy wins), reported, not failures.
   */
  discardedDeviceWrites: number;
}

const SLOTS = 48;
const SLOT_BYTES = 16 * 1024;
const MAX_LEN = 9000;

const opSchema = z.discriminatedUnion("k", [
  z.strictObject({
    k: z.literal("map"),
    slot: z.int().min(0).max(SLOTS - 1),
    off: z.int().min(0).max(4095),
    len: z.int().min(1).max(MAX_LEN),
    dir: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  }),
  z.strictObject({ k: z.literal("unmap"), which: z.int().min(0) }),
  z.strictObject({ k: z.literal("sync"), which: z.int().min(0), toCpu: z.boolean() }),
  z.strictObject({
    k: z.literal("read"),
    which: z.int().min(0),
    off: z.int().min(0),
    len: z.int().min(1),
  }),
  z.strictObject({
    k: z.literal("write"),
    which: z.int().min(0),
    off: z.int().min(0),
    len: z.int().min(1),
  }),
  z.strictObject({
    k: z.literal("probe"),
    page: z.int().min(0),
    off: z.int().min(0).max(4095),
    write: z.boolean(),
  }),
  z.strictObject({
    k: z.literal("dead"),
    which: z.int().min(0),
    off: z.int().min(0),
    unmap: z.boolean(),
  }),
  z.strictObject({ k: z.literal("tick"), ms: z.number().min(0).max(1000) }),
  z.strictObject({ k: z.literal("hostile"), kind: z.int().min(0).max(3) }),
  z.strictObject({
    k: z.literal("pagetable"),
    levels: z.union([z.literal(3), z.literal(4)]),
    sizes: z.int().min(0).max(3),
    iovaGiB: z.int().min(0).max(255),
    gpaGiB: z.int().min(0).max(4095),
    iovaPages: z.int().min(0).max(262143),
    skew: z.int().min(0).max(4096),
    pages: z.int().min(1).max(1 << 20),
    cutAt: z.int().min(0),
    cutPages: z.int().min(0),
    probes: z.array(z.int().min(-16)).max(16),
    edge: z.int().min(0).max(7).optional(),
  }),
  z.strictObject({
    k: z.literal("iotlb"),
    capacity: z.int().min(0).max(IOTLB_CAPACITIES.length - 1),
    steps: z.array(
      z.tuple([z.int().min(0), z.int().min(0), z.int().min(0), z.int().min(0), z.int().min(0)]),
    )
      .max(64),
  }),
  z.strictObject({
    k: z.literal("flushq"),
    size: z.int().min(0).max(FQ_SIZES.length - 1),
    timeout: z.int().min(0).max(FQ_TIMEOUTS.length - 1),
    steps: z.array(z.tuple([z.int().min(0), z.int().min(0), z.int().min(0)])).max(64),
  }),
  z.strictObject({
    k: z.literal("direct"),
    mask: z.int().min(0).max(DIRECT_MASKS.length - 1),
    busLimit: z.int().min(0).max(DIRECT_BUS_LIMITS.length - 1),
    base: z.int().min(0).max(DIRECT_GPAS.length - 1),
    off: z.int().min(0).max(0x1_0000),
    len: z.int().min(0).max(DIRECT_LENGTHS.length - 1),
    coherent: z.boolean(),
  }),
  z.strictObject({
    k: z.literal("swiotlb"),
    force: z.boolean(),
    steps: z.array(z.tuple([z.int().min(0), z.int().min(0), z.int().min(0), z.int().min(0)]))
      .max(64),
  }),
  z.strictObject({
    k: z.literal("edge"),
    kind: z.int().min(0).max(DMA_EDGE_KINDS - 1),
    n: z.int().min(0),
  }),
]);
const inputSchema = z.strictObject({
  mode: z.enum(DMA_MODE_NAMES),
  ops: z.array(opSchema).max(500),
});

interface Mapping {
  id: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
  bus: U64;
  slot: number;
  /** What the driver expects at gpa after unmap (device writes applied). */
  expect: Uint8Array;
}

function pattern(id: number, i: number): number {
  return (id * 131 + i * 7 + 1) & 0xff;
}

function busAdd(bus: U64, n: number): U64 {
  return typeof bus === "number" ? bus + n : bus + BigInt(n);
}

function isCatalogued(e: unknown): boolean {
  return e instanceof DmaFault || e instanceof DmaMapError || e instanceof MemoryFault;
}

/** Modes whose driver side tracks mappings (unmap of a dead one must fail). */
function tracks(mode: DmaMode): boolean {
  return mode.tracksMappings;
}

/** The state of one `dma-modes` input run: the mode, its memory, live and dead mappings. */
class DmaModesRun {
  readonly clock = new FakeClock();
  readonly lab: DmaLab;
  readonly mode: DmaMode;
  readonly memory: GuestMemory;
  readonly report: DmaModesReport = {
    staleAccesses: 0,
    faults: 0,
    subPageExposures: 0,
    mapRefusals: 0,
    bytesChecked: 0,
    discardedDeviceWrites: 0,
  };
  readonly live: Mapping[] = [];
  readonly dead: Mapping[] = [];
  readonly slotUsed = new Uint8Array(SLOTS);
  nextId = 1;
  readonly t = new DmaTranslation();

  constructor(readonly input: DmaModesInput) {
    this.lab = createDmaLab(input.mode, {
      clock: this.clock,
      bufferSize: SLOTS * SLOT_BYTES,
      ringSize: 64 * 1024,
      poolSize: 512 * 1024,
      fqSize: 16,
    });
    this.mode = this.lab.mode;
    this.memory = this.lab.memory;
  }

  /** Runs `fn`; an uncatalogued throw is an oracle failure. */
  guard<R>(what: string, fn: () => R): R {
    try {
      return fn();
    } catch (e) {
      if (e instanceof OracleFailure) throw e;
      if (!isCatalogued(e)) {
        throw new OracleFailure("uncatalogued-throw", `${this.input.mode}: ${what} threw ${e}`, e);
      }
      throw e;
    }
  }

  /** Device access of `len` bytes at `bus`; `ok` is false when it faulted (DmaFault). */
  deviceAccess(
    bus: U64,
    len: number,
    write: boolean,
    data: Uint8Array | null,
  ): { ok: boolean; fault: DmaFault | null } {
    let done = 0;
    while (done < len) {
      try {
        this.mode.space.translate(
          busAdd(bus, done),
          len - done,
          write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ,
          this.t,
        );
      } catch (e) {
        if (e instanceof DmaFault) return { ok: false, fault: e };
        throw new OracleFailure(
          "uncatalogued-throw",
          `${this.input.mode}: translate threw ${e}`,
          e,
        );
      }
      if (data !== null) {
        const part = data.subarray(done, done + this.t.length);
        this.guard(
          "device memory access",
          () => write ? this.memory.write(this.t.gpa, part) : this.memory.read(this.t.gpa, part),
        );
      }
      done += this.t.length;
    }
    return { ok: true, fault: null };
  }

  /** Is the page of `bus` covered by a live mapping's bus pages (IOMMU isolation granularity)? */
  inLivePage(bus: U64): boolean {
    if (typeof bus !== "number") return false;
    const page = Math.floor(bus / 4096);
    for (const m of this.live) {
      if (typeof m.bus !== "number") continue;
      if (page >= Math.floor(m.bus / 4096) && page <= Math.floor((m.bus + m.len - 1) / 4096)) {
        return true;
      }
    }
    return false;
  }

  /** After unmap the driver sees exactly the bytes it expects (device writes applied). */
  checkUnmapped(m: Mapping): void {
    const got = this.memory.view(m.gpa, m.len);
    for (let i = 0; i < m.len; i++) {
      if (got[i] !== m.expect[i]) {
        throw new OracleFailure(
          "data-integrity",
          `${this.input.mode}: mapping ${m.id} (gpa 0x${
            m.gpa.toString(16)
          }, dir ${m.dir}) byte ${i} is ` +
            `${got[i]}, expected ${m.expect[i]} after unmap`,
        );
      }
    }
    this.report.bytesChecked += m.len;
  }

  /** Op `map`: a valid buffer in a free slot; only pool or IOVA exhaustion may refuse it. */
  map(op: Extract<DmaOp, { k: "map" }>): void {
    if (this.slotUsed[op.slot]) return;
    const gpa = op.slot * SLOT_BYTES + op.off;
    const len = Math.min(op.len, SLOT_BYTES - op.off);
    const id = this.nextId++;
    const bytes = new Uint8Array(len);
    for (let i = 0; i < len; i++) bytes[i] = pattern(id, i);
    this.memory.write(gpa, bytes);
    let bus: U64;
    try {
      bus = this.guard("map", () => this.mode.api.map(gpa, len, op.dir));
    } catch (e) {
      if (
        e instanceof DmaMapError &&
        (e.reason === "pool-exhausted" || e.reason === "iova-exhausted")
      ) {
        this.report.mapRefusals++;
        noteError(e);
        return;
      }
      throw new OracleFailure(
        "map-refused",
        `${this.input.mode}: map of a valid buffer failed: ${e}`,
        e,
      );
    }
    this.slotUsed[op.slot] = 1;
    this.live.push({ id, gpa, len, dir: op.dir, bus, slot: op.slot, expect: bytes.slice() });
  }

  /** Ops `unmap` and `sync` of a live mapping: never refused; bytes come back as expected. */
  unmapOrSync(op: Extract<DmaOp, { k: "unmap" | "sync" }>): void {
    if (this.live.length === 0) return;
    const idx = op.which % this.live.length;
    const m = this.live[idx];
    try {
      this.guard(op.k, () => {
        if (op.k === "unmap") this.mode.api.unmap(m.bus, m.len, m.dir);
        else if (op.toCpu) this.mode.api.syncForCpu(m.bus, m.len, m.dir);
        else this.mode.api.syncForDevice(m.bus, m.len, m.dir);
      });
    } catch (e) {
      throw new OracleFailure(
        "live-mapping-refused",
        `${this.input.mode}: ${op.k} of live mapping ${m.id}: ${e}`,
        e,
      );
    }
    if (op.k === "unmap") {
      this.live.splice(idx, 1);
      this.dead.push(m);
      this.slotUsed[m.slot] = 0;
      if (m.dir !== 1) this.checkUnmapped(m); // device writes come back on unmap
    } else if (!op.toCpu && m.dir !== 2 && this.mode.swiotlb !== null) {
      // Bounce modes: syncForDevice copies the CPU's bytes over the slot, so device writes
      // not yet synced for the CPU are discarded (DMA-API ownership rule). Report, re-base.
      const cpu = this.memory.view(m.gpa, m.len);
      for (let i = 0; i < m.len; i++) {
        if (cpu[i] !== m.expect[i]) {
          this.report.discardedDeviceWrites++;
          break;
        }
      }
      m.expect.set(cpu);
    } else if (op.toCpu && m.dir !== 1) {
      const got = this.memory.view(m.gpa, m.len);
      for (let i = 0; i < m.len; i++) {
        if (got[i] !== m.expect[i]) {
          throw new OracleFailure(
            "data-integrity",
            `${this.input.mode}: mapping ${m.id} byte ${i} after syncForCpu`,
          );
        }
      }
      this.report.bytesChecked += m.len;
    }
  }

  /** Ops `read` and `write`: the device reaches a live mapping and sees the driver's bytes. */
  access(op: Extract<DmaOp, { k: "read" | "write" }>): void {
    if (this.live.length === 0) return;
    const m = this.live[op.which % this.live.length];
    const off = op.off % m.len;
    const len = Math.min(op.len, m.len - off);
    const write = op.k === "write";
    if (write && m.dir === 1) return; // device-readable only: a write would fault legitimately
    if (!write && m.dir === 2 && this.mode.iommuApi !== null) return; // write-only IOMMU entry
    const data = new Uint8Array(len);
    if (write) { for (let i = 0; i < len; i++) data[i] = pattern(m.id + 1000, off + i); }
    const r = this.deviceAccess(busAdd(m.bus, off), len, write, data);
    if (!r.ok) {
      throw new OracleFailure(
        "data-integrity",
        `${this.input.mode}: device ${op.k} of live mapping ${m.id} at +${off} len ${len} faulted: ${r.fault?.message}`,
      );
    }
    if (write) m.expect.set(data, off);
    else {
      for (let i = 0; i < len; i++) {
        if (data[i] !== m.expect[off + i]) {
          throw new OracleFailure(
            "data-integrity",
            `${this.input.mode}: device read of mapping ${m.id} byte ${off + i} = ${
              data[i]
            }, expected ${m.expect[off + i]}`,
          );
        }
      }
    }
    this.report.bytesChecked += len;
  }

  /** Op `probe`: a device access at an arbitrary bus address near the mappings or in RAM. */
  probeOp(op: Extract<DmaOp, { k: "probe" }>): void {
    // A device access at an arbitrary bus address near the mappings or in RAM.
    const base: U64 = this.live.length > 0 && op.page % 2 === 0
      ? this.live[op.page % this.live.length].bus
      : this.lab.bufferGpa;
    const bus = busAdd(
      typeof base === "number" ? Math.floor(base / 4096) * 4096 : base,
      (op.page >> 1) * 4096 % (1 << 24) + op.off,
    );
    this.probe(bus, op.write);
  }

  /** Op `dead`: a dead mapping is neither unmapped twice nor reachable (outside the lazy window). */
  deadOp(op: Extract<DmaOp, { k: "dead" }>): void {
    if (this.dead.length === 0) return;
    const m = this.dead[op.which % this.dead.length];
    if (op.unmap) {
      // A dead handle equal to a live one (the IOVA was reused) is ambiguous: skip it.
      if (this.live.some((l) => l.bus === m.bus)) return;
      let threw: unknown = null;
      try {
        this.guard("unmap of a dead mapping", () => this.mode.api.unmap(m.bus, m.len, m.dir));
      } catch (e) {
        threw = e;
      }
      if (threw !== null) noteError(threw);
      if (tracks(this.mode) && !(threw instanceof DmaMapError && threw.reason === "not-mapped")) {
        throw new OracleFailure(
          "isolation",
          `${this.input.mode}: unmap of dead mapping ${m.id} did not fail with not-mapped (${threw})`,
        );
      }
    } else this.probe(busAdd(m.bus, op.off % m.len), false);
  }

  /** Op `tick`: time passes; the lazy window holds exactly the stale ranges. */
  tick(op: Extract<DmaOp, { k: "tick" }>): void {
    this.clock.advance(op.ms);
    this.mode.tick();
    // The lazy window (Linux flush queue): every IOVA range still queued for invalidation is
    // stale (not live: no iova_to_phys) over its whole length; strict mode queues nothing.
    const api = this.mode.iommuApi;
    if (api === null) return;
    const pending = api.pendingIovas();
    if (api.policy === "strict" && pending.length > 0) {
      throw new OracleFailure(
        "lazy-window",
        `strict ${this.input.mode}: ${pending.length} pending`,
      );
    }
    for (const p of pending) {
      const last = p.bus + p.length - 1;
      if (!api.isStale(p.bus) || !api.isStale(last) || api.busToGpa(p.bus) !== -1) {
        throw new OracleFailure(
          "lazy-window",
          `${this.input.mode}: pending IOVA ${p.bus} + ${p.length} not stale over its length, or ` +
            `still translated (${api.busToGpa(p.bus)})`,
        );
      }
    }
  }

  /** Edge inputs whose only acceptable outcome is success or a catalogued error. */
  hostile(kind: number): void {
    if (kind === 0) {
      // the x86 MSI doorbell window: reserved in IOMMU modes
      const r = this.deviceAccess(0xfee0_0000, 4, true, null);
      if (!r.ok) noteError(r.fault);
      else if (this.mode.iommu !== null) {
        throw new OracleFailure(
          "isolation",
          `${this.input.mode}: DMA write to the MSI window succeeded`,
        );
      }
    } else if (kind === 1) {
      // the last byte of the 64-bit bus space, two bytes long: wraps
      const r = this.deviceAccess(2n ** 64n - 1n, 2, false, null);
      if (r.ok) {
        throw new OracleFailure("isolation", `${this.input.mode}: a wrapping access succeeded`);
      }
      noteError(r.fault);
    } else {
      // kind 2: a mapping larger than one bounce can hold; kind 3: a buffer beyond 2^52
      const [gpa, len] = kind === 2 ? [0, 300 * 1024] : [2 ** 52 - 4096, 8192];
      try {
        const bus = this.guard("hostile map", () => this.mode.api.map(gpa, len, 1));
        if (kind === 3) {
          throw new OracleFailure(
            "map-accepted",
            `${this.input.mode}: a buffer beyond 2^52 was mapped`,
          );
        }
        this.guard("hostile unmap", () => this.mode.api.unmap(bus, len, 1));
      } catch (e) {
        if (e instanceof OracleFailure) throw e;
        noteError(e);
      }
    }
  }

  /** One probing access and what the mode's isolation allows it. */
  probe(bus: U64, write: boolean): void {
    const r = this.deviceAccess(bus, 1, write, null);
    if (!r.ok) noteError(r.fault);
    if (this.mode.isolation === "page") {
      const covered = this.inLivePage(bus);
      if (r.ok && !covered) {
        if (this.mode.isStale(bus)) this.report.staleAccesses++;
        else {
          throw new OracleFailure(
            "isolation",
            `${this.input.mode}: device ${
              write ? "write" : "read"
            } at bus ${bus} outside every live mapping succeeded`,
          );
        }
      } else if (r.ok) this.report.subPageExposures++;
      else this.report.faults++;
    } else if (this.mode.isolation === "shared-only") {
      if (r.ok) {
        const region = this.memory.regionAt(this.t.gpa);
        if (region !== undefined && region.private) {
          throw new OracleFailure(
            "isolation",
            `${this.input.mode}: device reached private GPA ${this.t.gpa}`,
          );
        }
      } else this.report.faults++;
    } else if (!r.ok) this.report.faults++;
  }

  /** Clean up: every live mapping unmaps and returns its bytes; no bounce slot leaks. */
  finish(): DmaModesReport {
    for (const m of this.live.splice(0)) {
      try {
        this.guard("final unmap", () => this.mode.api.unmap(m.bus, m.len, m.dir));
      } catch (e) {
        throw new OracleFailure(
          "live-mapping-refused",
          `${this.input.mode}: final unmap of ${m.id}: ${e}`,
          e,
        );
      }
      if (m.dir !== 1) this.checkUnmapped(m);
    }
    if (this.mode.swiotlb !== null && this.mode.swiotlb.usedSlots !== 0) {
      throw new OracleFailure(
        "slot-leak",
        `${this.input.mode}: ${this.mode.swiotlb.usedSlots} bounce slots leaked`,
      );
    }
    return this.report;
  }

  /** Runs one op. */
  step(op: DmaOp): void {
    switch (op.k) {
      case "map":
        return this.map(op);
      case "unmap":
      case "sync":
        return this.unmapOrSync(op);
      case "read":
      case "write":
        return this.access(op);
      case "probe":
        return this.probeOp(op);
      case "dead":
        return this.deadOp(op);
      case "tick":
        return this.tick(op);
      case "hostile":
        this.hostile(op.kind);
        return;
      case "pagetable": {
        // 2 MiB / 1 GiB leaves, split on a partial unmap (page_table_op.ts)
        const { k: _k, ...pt } = op;
        runPageTableOp(pt);
        break;
      }
      case "iotlb": {
        // The IOTLB alone against a model: levels, overflow flush, every invalidation (iotlb_op.ts)
        const { k: _k, ...tlbOp } = op;
        runIotlbOp(tlbOp);
        break;
      }
      case "flushq": {
        // Linux's lazy-flush queue by count and by (fake-this.clock) time (flush_queue_op.ts)
        const { k: _k, ...fqOp } = op;
        runFlushQueueOp(fqOp);
        break;
      }
      case "direct": {
        // dma-direct with a mask / bus limit / private this.memory (direct_op.ts)
        const { k: _k, ...dOp } = op;
        runDirectOp(dOp);
        break;
      }
      case "swiotlb": {
        // a small bounce pool: partial syncs, exhaustion, copy-back (swiotlb_op.ts)
        const { k: _k, ...sOp } = op;
        runSwiotlbOp(sOp);
        break;
      }
      case "edge":
        // A self-contained setup that must fail with one DmaMapError reason (dma_edges.ts).
        runDmaEdge(op.kind, op.n);
        this.report.mapRefusals++;
        return;
    }
  }
}

/**
 * Runs one input and returns the report; throws {@link OracleFailure} on a violated oracle.
 * Exported for tests.
 */
export function runDmaModes(input: DmaModesInput): DmaModesReport {
  const run = new DmaModesRun(input);
  for (const op of input.ops) run.step(op);
  return run.finish();
}

const dirArb = fc.constantFrom<DmaDirection>(0, 1, 2);
const opArb: fc.Arbitrary<DmaOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("map" as const),
      slot: fc.nat(SLOTS - 1),
      off: fc.nat(4095),
      len: fc.integer({ min: 1, max: MAX_LEN }),
      dir: dirArb,
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("unmap" as const), which: fc.nat(63) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("sync" as const),
      which: fc.nat(63),
      toCpu: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("read" as const),
      which: fc.nat(63),
      off: fc.nat(MAX_LEN),
      len: fc.integer({ min: 1, max: MAX_LEN }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("write" as const),
      which: fc.nat(63),
      off: fc.nat(MAX_LEN),
      len: fc.integer({ min: 1, max: MAX_LEN }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("probe" as const),
      page: fc.nat(4096),
      off: fc.nat(4095),
      write: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("dead" as const),
      which: fc.nat(63),
      off: fc.nat(MAX_LEN),
      unmap: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("tick" as const), ms: fc.constantFrom(0, 1, 5, 10, 11) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("hostile" as const), kind: fc.nat(3) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("pagetable" as const),
      levels: fc.constantFrom(3 as const, 4 as const),
      sizes: fc.nat(3),
      iovaGiB: fc.nat(255),
      gpaGiB: fc.nat(4095),
      iovaPages: fc.oneof(fc.constantFrom(0, 1, 511, 512, 1024), fc.nat(262143)),
      skew: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, {
        arbitrary: fc.nat(600),
        weight: 1,
      }),
      pages: fc.oneof(
        { arbitrary: fc.integer({ min: 1, max: 2048 }), weight: 4 },
        { arbitrary: fc.constantFrom(512, 1024, 262144, 262144 + 512), weight: 1 },
      ),
      cutAt: fc.nat(270000),
      cutPages: fc.nat(3000),
      probes: fc.array(fc.integer({ min: -4, max: 270000 }), { maxLength: 8 }),
      edge: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, {
        arbitrary: fc.integer({ min: 1, max: 7 }),
        weight: 3,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("iotlb" as const),
      capacity: fc.nat(IOTLB_CAPACITIES.length - 1),
      steps: fc.array(
        fc.tuple(fc.nat(IOTLB_STEP_KINDS - 1), fc.nat(3), fc.nat(4), fc.nat(15), fc.nat(4095)),
        { maxLength: 48 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("flushq" as const),
      size: fc.nat(FQ_SIZES.length - 1),
      timeout: fc.nat(FQ_TIMEOUTS.length - 1),
      steps: fc.array(fc.tuple(fc.nat(FQ_STEP_KINDS - 1), fc.nat(40), fc.nat(3)), {
        maxLength: 32,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("direct" as const),
      mask: fc.nat(DIRECT_MASKS.length - 1),
      busLimit: fc.nat(DIRECT_BUS_LIMITS.length - 1),
      base: fc.nat(DIRECT_GPAS.length - 1),
      off: fc.oneof(fc.constantFrom(0, 4095, 4096, 8192), fc.nat(0x1_0000)),
      len: fc.nat(DIRECT_LENGTHS.length - 1),
      coherent: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("swiotlb" as const),
      force: fc.boolean(),
      steps: fc.array(
        fc.tuple(fc.nat(SWIOTLB_STEP_KINDS - 1), fc.nat(7), fc.nat(0xffff), fc.nat(0xffff)),
        { maxLength: 32 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("edge" as const),
      kind: fc.nat(DMA_EDGE_KINDS - 1),
      n: fc.nat(0xffff),
    }),
  },
);

/** The `dma-modes` fuzz target. */
export const dmaModesTarget: FuzzTarget<DmaModesInput> = {
  name: "dma-modes",
  description:
    "DMA modes: map/unmap/sync + device accesses; data intact, isolation, lazy window reported",
  arbitrary: () =>
    fc.record({
      mode: fc.constantFrom(...DMA_MODE_NAMES),
      ops: fc.array(opArb, { maxLength: 80, size: "max" }),
    }),
  run(input: DmaModesInput): void {
    runDmaModes(input);
  },
  encode: (input) => input,
  decode: (json) => inputSchema.parse(json) as DmaModesInput,
};
