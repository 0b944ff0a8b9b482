/**
 * One virtqueue of a memory image, inspected: layout, ring addresses, indices and flags,
 * event-suppression state, the device's positions, the outstanding chains popped by our device
 * engine (cross-checked by a walker), the completed (used) entries with a few driver-side checks,
 * and every validation error with its catalogue code.
 *
 * The completed entries are checked by this module's own code, **not** by our driver engine
 * (`SplitDriverQueue` / `PackedDriverQueue` need the driver's private state, which an image does
 * not hold). Checks done:
 * - split: `USED_IDX_JUMP` (used idx more than Queue Size behind, or ahead of, avail idx, §2.7.8);
 *   per entry (the last min(Queue Size, used idx) ring elements) `USED_ID_OUT_OF_RANGE`
 *   (id >= Queue Size) and `USED_LEN_EXCEEDS_CAPACITY` (len > the writable bytes of the chain the
 *   descriptor table holds at head `id` now; skipped when that head was re-used by an outstanding
 *   chain, when that chain does not decode, or with `completedChains: false`).
 * - packed: per slot whose AVAIL and USED bits are equal, `USED_ID_OUT_OF_RANGE` only.
 *
 * Not done (the driver engine does them at run time): the tighter `USED_IDX_JUMP` bound (used idx
 * moved by more than the buffers the driver exposed), `USED_ID_NOT_HEAD` (whether `id` was an
 * outstanding head, never returned twice), the capacity the driver recorded when it added the
 * buffer (the table may have been rewritten since), packed used-length checks (the device
 * overwrote the used descriptor), `VIRTIO_F_IN_ORDER` batch completion, used slots older than
 * Queue Size entries (overwritten), and used-buffer notification (`used_event`) behaviour.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { IdentityAddressSpace } from "../dma/identity.ts";
import { DmaFault } from "../dma/errors.ts";
import { MemoryFault } from "../memory/fault.ts";
import type { U64 } from "../memory/u64.ts";
import type { RingLayout } from "../virtio/queue.ts";
import { VIRTQ_DESC_SIZE } from "../virtio/constants.ts";
import { type DecodedChain, type DecodeError, decodeError } from "./decoded_chain.ts";
import { splitAreaSizes, SplitRingView } from "./split_view.ts";
import {
  inferPackedPositions,
  type PackedEventSuppression,
  type PackedPositionGuess,
  PackedRingView,
} from "./packed_view.ts";
import type { QemuQueueStatus } from "./qemu_oracle.ts";
import { popOutstandingWithEngine } from "./engine_decode.ts";
import { hex64, u64Compare } from "../memory/u64.ts";
import { VIRTQ_DESC_F_INDIRECT } from "../virtio/constants.ts";
import { VtdAddressSpace, VtdTranslationFault } from "./vtd_space.ts";

/** What the inspector needs to know about a queue (a {@link FixtureQueue} fits). */
export interface QueueSpec {
  /** Device name. */
  device: string;
  /** QOM path or other identifier. */
  path: string;
  /** Queue index. */
  queue: number;
  /** Queue Size. */
  size: number;
  /** Layout. */
  layout: RingLayout;
  /** Descriptor area address. */
  descAddr: U64;
  /** Driver area address. */
  driverAddr: U64;
  /** Device area address. */
  deviceAddr: U64;
  /** Negotiated features. */
  features: bigint;
  /** QEMU's private state, when known (gives the device's positions exactly). */
  qemuStatus?: QemuQueueStatus;
}

/** Options of {@link inspectQueue}. */
export interface InspectOptions {
  /** Guest memory image. */
  memory: GuestMemory;
  /** Guest RAM size in bytes. */
  ramSize: number;
  /** Device DMA view (default identity: addresses are GPAs). */
  dma?: DmaAddressSpace;
  /**
   * Where the device's private positions come from: `"qemu"` (default when the spec has a QEMU
   * status) or `"memory"` (inferred from the rings alone, assuming nothing is in flight).
   */
  positions?: "qemu" | "memory";
  /**
   * Decode the chain behind each completed split entry (default `true`); fuzzing turns it off
   * to save time (the used-length check then only runs on entries it decodes: none).
   */
  completedChains?: boolean;
  /**
   * True when `memory` is a throwaway copy: the engine then rebases and pops in it directly
   * instead of cloning it first (the image is modified). Default `false`.
   */
  scratchMemory?: boolean;
  /**
   * The device's position, when the caller knows it (e.g. a fuzz seed); overrides `positions`.
   * Split: free-running indices; packed: slots and wrap counters.
   */
  devicePosition?: {
    lastAvailIdx: number;
    usedIdx: number;
    availWrap?: number;
    usedWrap?: number;
    inUse?: number;
  };
  /**
   * GPAs of pages the capture's index lists but its image does not hold (see
   * `Fixture.truncatedPages`): a ring there is `PAGE_TRUNCATED` rather than `RING_UNMAPPED`.
   */
  truncatedPages?: readonly number[];
}

/** The device's position in the ring. */
export interface DevicePosition {
  /** Split: free-running `last_avail_idx`; packed: next avail slot. */
  lastAvailIdx: number;
  /** Split: free-running used index; packed: next used slot. */
  usedIdx: number;
  /** Packed: avail wrap counter. */
  availWrap?: number;
  /** Packed: used wrap counter. */
  usedWrap?: number;
  /** Chains popped and not yet used. */
  inUse: number;
  /** Where the numbers come from (`given`: {@link InspectOptions.devicePosition}). */
  source: "qemu" | "memory" | "given";
  /** Packed inference quality (see {@link PackedPositionGuess.basis}). */
  basis?: PackedPositionGuess["basis"];
}

/** One completed (used) entry. */
export interface UsedEntry {
  /** Split: free-running used index; packed: ring slot. */
  position: number;
  /** Returned id (split head / packed buffer ID). */
  id: number;
  /** Bytes written, as reported. */
  len: number;
  /** Packed: the used wrap counter the slot carries. */
  wrap?: number;
  /**
   * Driver-side validation error, or `null`: `USED_ID_OUT_OF_RANGE`, or (split, chain decoded)
   * `USED_LEN_EXCEEDS_CAPACITY`; never `USED_ID_NOT_HEAD` (see the module notes).
   */
  error: DecodeError | null;
  /**
   * Split: the chain at head `id` as the descriptor table holds it now (the driver's last use of
   * that head; `reused` when an outstanding chain took the head since). Packed: absent (the
   * device overwrote the used slot's `len`, `id` and `flags`).
   */
  chain?: DecodedChain;
  /** Split: true when the head now belongs to an outstanding chain. */
  reused?: boolean;
}

/** The inspection of one queue. */
export interface QueueReport {
  /** Device name. */
  device: string;
  /** QOM path. */
  path: string;
  /** Queue index. */
  queue: number;
  /** Layout. */
  layout: RingLayout;
  /** Queue Size. */
  size: number;
  /** Negotiated features. */
  features: bigint;
  /** Area bus addresses and their byte sizes. */
  areas: {
    desc: { addr: U64; bytes: number };
    driver: { addr: U64; bytes: number };
    device: { addr: U64; bytes: number };
  };
  /** Split ring indices and flags, when split and readable. */
  split?: {
    availFlags: number;
    availIdx: number;
    usedEvent: number;
    usedFlags: number;
    usedIdx: number;
    availEvent: number;
    eventIdx: boolean;
  };
  /** Packed event suppression and inferred ring positions, when packed and readable. */
  packed?: {
    driverEvent: PackedEventSuppression;
    deviceEvent: PackedEventSuppression;
    inferred: PackedPositionGuess;
  };
  /** The device's position used to find outstanding chains. */
  position?: DevicePosition;
  /** Buffers available to the device and not yet popped. */
  outstanding: DecodedChain[];
  /**
   * Used entries (split: the last min(N, used idx) used ring elements; packed: used slots), with
   * the inspector's own driver-side checks (module notes list which are done and which are not).
   */
  completed: UsedEntry[];
  /** Every validation error: ring-level, per chain, per used entry. */
  errors: DecodeError[];
  /** Free-text notes (capture limits, inferences). */
  notes: string[];
  /** Which decoder produced `outstanding`. */
  decoder: string;
  /**
   * Our device engine's pops of the outstanding chains (from a rebased scratch copy, see
   * `engine_decode.ts`), cross-checked with the walker: `mismatches` lists every disagreement.
   */
  engine?: {
    name: string;
    popped: number;
    error: DecodeError | null;
    errorPosition: number | null;
    mismatches: string[];
    notes: string[];
  };
}

/**
 * Inspects one queue of a memory image. Never throws for a bad ring or a bad capture: problems
 * become {@link QueueReport.errors} entries with catalogue codes (`VIRTQ_ERRORS`, or
 * `INSPECT_ERRORS` for capture findings: `IOVA_UNTRANSLATED`, `IOMMU_TABLE_NOT_CAPTURED`,
 * `RING_OUTSIDE_RAM`, `PAGE_TRUNCATED`, and `QUEUE_DECODE_FAILED` for anything unexpected).
 */
export function inspectQueue(spec: QueueSpec, opts: InspectOptions): QueueReport {
  try {
    return inspectQueueUnguarded(spec, opts);
  } catch (e) {
    const r = emptyReport(spec);
    r.errors.push(decodeError("QUEUE_DECODE_FAILED", errorText(e)));
    return r;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function emptyReport(
  spec: QueueSpec,
  decoder = "none (the queue could not be decoded)",
): QueueReport {
  const sizes = spec.layout === "split"
    ? splitAreaSizes(spec.size)
    : { desc: VIRTQ_DESC_SIZE * spec.size, avail: 4, used: 4 };
  return {
    device: spec.device,
    path: spec.path,
    queue: spec.queue,
    layout: spec.layout,
    size: spec.size,
    features: spec.features,
    areas: {
      desc: { addr: spec.descAddr, bytes: sizes.desc },
      driver: { addr: spec.driverAddr, bytes: sizes.avail },
      device: { addr: spec.deviceAddr, bytes: sizes.used },
    },
    outstanding: [],
    completed: [],
    errors: [],
    notes: [],
    decoder,
  };
}

/**
 * The finding for a ring area that cannot be read: an IOVA the VT-d tables do not translate, a
 * VT-d table page or ring page missing from the capture, or a GPA beyond guest RAM.
 */
export function ringFaultError(
  e: MemoryFault | DmaFault,
  ramSize: number,
  truncatedPages: readonly number[] = [],
): DecodeError {
  if (e instanceof VtdTranslationFault) {
    const w = e.walk;
    return w.reason === "page-missing"
      ? decodeError(
        "IOMMU_TABLE_NOT_CAPTURED",
        `ring area at IOVA ${hex64(w.iova)}: ${w.message} (level ${w.level ?? w.structure})`,
      )
      : decodeError("IOVA_UNTRANSLATED", `ring area: ${w.message}`);
  }
  if (e instanceof MemoryFault) {
    if (e.gpa + e.length > ramSize) {
      return decodeError(
        "RING_OUTSIDE_RAM",
        `ring area access at GPA ${hex64(e.gpa)} (+${e.length}) is beyond guest RAM ` +
          `(${ramSize} bytes)`,
      );
    }
    const first = e.gpa - (e.gpa % 4096);
    for (let p = first; p < e.gpa + Math.max(e.length, 1); p += 4096) {
      if (truncatedPages.includes(p)) {
        return decodeError(
          "PAGE_TRUNCATED",
          `ring area page ${hex64(p)} is listed by the index but missing from the truncated image`,
        );
      }
    }
  }
  return decodeError("RING_UNMAPPED", `ring areas not readable: ${e.message}`);
}

/**
 * After a chain decode: when the chain's first error is a buffer / indirect-table fault caused by
 * a VT-d walk that stopped on that descriptor's IOVA, the error becomes `IOVA_UNTRANSLATED` (or
 * `IOMMU_TABLE_NOT_CAPTURED` when a table page was missing), naming the IOVA and the level.
 * @param mark `dma.stops.length` before the decode.
 */
function refineVtdError(chain: DecodedChain, dma: DmaAddressSpace, mark: number): void {
  if (!(dma instanceof VtdAddressSpace) || dma.stops.length <= mark || chain.error === null) return;
  const code = chain.error.code;
  if (code !== "DESC_BUFFER_FAULT" && code !== "INDIRECT_TABLE_FAULT") return;
  const idx = chain.error.index;
  const d = code === "INDIRECT_TABLE_FAULT"
    ? chain.indirect
    : chain.descriptors.find((x) => x.index === idx) ?? null;
  if (d === null) return;
  const lo = BigInt(d.addr), hi = lo + BigInt(Math.max(d.len, 1));
  const stop = dma.stops.slice(mark).find((w) => w.iova >= lo && w.iova < hi);
  if (stop === undefined) return;
  const what = code === "INDIRECT_TABLE_FAULT" ? "indirect table" : "buffer";
  chain.error = stop.reason === "page-missing"
    ? decodeError(
      "IOMMU_TABLE_NOT_CAPTURED",
      `descriptor ${idx}: ${what} at IOVA ${hex64(stop.iova)}: ${stop.message}`,
      idx,
    )
    : decodeError("IOVA_UNTRANSLATED", `descriptor ${idx}: ${what}: ${stop.message}`, idx);
}

/** Decodes through `decode` and refines a VT-d caused error (see {@link refineVtdError}). */
function withVtd<T extends DecodedChain | { chain: DecodedChain }>(
  dma: DmaAddressSpace,
  decode: () => T,
): T {
  const mark = dma instanceof VtdAddressSpace ? dma.stops.length : 0;
  const r = decode();
  refineVtdError("chain" in r ? r.chain : r, dma, mark);
  return r;
}

/** The engine's code and the inspector's refined code name the same finding. */
function sameFinding(engine: string, walker: string | undefined): boolean {
  if (engine === walker) return true;
  const vtd = walker === "IOVA_UNTRANSLATED" || walker === "IOMMU_TABLE_NOT_CAPTURED";
  return vtd && (engine === "DESC_BUFFER_FAULT" || engine === "INDIRECT_TABLE_FAULT");
}

function inspectQueueUnguarded(spec: QueueSpec, opts: InspectOptions): QueueReport {
  const dma = opts.dma ?? new IdentityAddressSpace();
  const report = emptyReport(
    spec,
    "device engine (SplitDeviceQueue / PackedDeviceQueue), cross-checked by the walker",
  );
  const useQemu = (opts.positions ?? (spec.qemuStatus ? "qemu" : "memory")) === "qemu" &&
    spec.qemuStatus !== undefined;
  if (spec.layout === "split" && (spec.size & (spec.size - 1)) !== 0) {
    // §2.7: split Queue Size is a power of 2.
    report.errors.push(
      decodeError("QUEUE_SIZE_INVALID", `split queue size ${spec.size} is not a power of 2`),
    );
  }
  // §2.7 / §2.8.13 / §2.8.10 alignment: split desc 16, avail 2, used 4; packed desc 16, events 4.
  const align = spec.layout === "split" ? [16, 2, 4] : [16, 4, 4];
  const names = spec.layout === "split"
    ? ["descriptor table", "available ring", "used ring"]
    : ["descriptor ring", "driver event suppression", "device event suppression"];
  [spec.descAddr, spec.driverAddr, spec.deviceAddr].forEach((a, i) => {
    if (Number(BigInt(a) % BigInt(align[i])) !== 0) {
      report.errors.push(decodeError(
        "RING_MISALIGNED",
        `${names[i]} at ${hex64(a)} is not ${align[i]}-byte aligned`,
      ));
    }
  });
  try {
    if (spec.layout === "split") inspectSplit(spec, opts, dma, useQemu, report);
    else inspectPacked(spec, opts, dma, useQemu, report);
  } catch (e) {
    // Only an unreachable ring area is a finding; anything else is a bug here: rethrow.
    if (!(e instanceof MemoryFault || e instanceof DmaFault)) throw e;
    report.errors.push(ringFaultError(e, opts.ramSize, opts.truncatedPages));
  }
  if (report.position !== undefined) crossCheckEngine(spec, opts, dma, report);
  for (const c of report.outstanding) if (c.error) report.errors.push(c.error);
  for (const u of report.completed) if (u.error) report.errors.push(u.error);
  return report;
}

function inspectSplit(
  spec: QueueSpec,
  opts: InspectOptions,
  dma: DmaAddressSpace,
  useQemu: boolean,
  report: QueueReport,
): void {
  const n = spec.size;
  const view = new SplitRingView({
    memory: opts.memory,
    dma,
    ramSize: opts.ramSize,
    size: n,
    descAddr: spec.descAddr,
    availAddr: spec.driverAddr,
    usedAddr: spec.deviceAddr,
    features: spec.features,
  });
  const st = view.state;
  report.split = {
    availFlags: st.availFlags,
    availIdx: st.availIdx,
    usedEvent: st.usedEvent,
    usedFlags: st.usedFlags,
    usedIdx: st.usedIdx,
    availEvent: st.availEvent,
    eventIdx: st.eventIdx,
  };
  const q = spec.qemuStatus;
  const given = opts.devicePosition;
  const pos: DevicePosition = given
    ? {
      lastAvailIdx: given.lastAvailIdx,
      usedIdx: given.usedIdx,
      inUse: given.inUse ?? 0,
      source: "given",
    }
    : useQemu && q && q["last-avail-idx"] !== undefined
    ? { lastAvailIdx: q["last-avail-idx"], usedIdx: q["used-idx"], inUse: q.inuse, source: "qemu" }
    : { lastAvailIdx: st.usedIdx, usedIdx: st.usedIdx, inUse: 0, source: "memory" };
  report.position = pos;
  if (pos.source === "memory") {
    report.notes.push(
      "device position inferred from the used ring (last_avail_idx = used idx: nothing in flight)",
    );
  }
  // Driver side, §2.7.8: the device never uses more buffers than were made available.
  const inRing = (st.availIdx - st.usedIdx) & 0xffff;
  if (inRing > n) {
    report.errors.push(decodeError(
      "USED_IDX_JUMP",
      `used idx ${st.usedIdx} is ${(st.usedIdx - st.availIdx) & 0xffff} ahead of avail idx ` +
        `${st.availIdx} (or ${inRing} > queue size behind)`,
    ));
  }
  // Device side, §2.7.6: at most Queue Size buffers outstanding.
  const outstanding = (st.availIdx - pos.lastAvailIdx) & 0xffff;
  if (outstanding > n) {
    report.errors.push(decodeError(
      "AVAIL_IDX_JUMP",
      `avail idx ${st.availIdx} is ${outstanding} ahead of last_avail_idx ${pos.lastAvailIdx}`,
    ));
  } else {
    const heads = new Set<number>();
    for (let k = 0; k < outstanding; k++) {
      const p = (pos.lastAvailIdx + k) & 0xffff;
      const head = view.availRing(p);
      const chain = withVtd(dma, () => view.decodeChain(head, p));
      if (chain.error === null && heads.has(head)) {
        // §2.7.13.1: a head is owned by the device until used (CVE-2016-5403).
        chain.error = decodeError(
          "HEAD_IN_USE",
          `head ${head} at avail position ${p} is already outstanding`,
          head,
        );
      }
      heads.add(head);
      report.outstanding.push(chain);
    }
  }
  // Used ring: the last min(N, used idx) elements, checked as the driver would (§2.7.8).
  // Older slots than used idx - N were overwritten; below N only `used idx` were ever written
  // (unless the index wrapped 2^16, which the image cannot tell).
  const count = Math.min(n, st.usedIdx);
  const outstandingHeads = new Set(report.outstanding.map((c) => c.head));
  for (let k = count; k >= 1; k--) {
    const p = (st.usedIdx - k) & 0xffff;
    const e = view.usedElem(p);
    let error: DecodeError | null = null;
    let chain: DecodedChain | undefined;
    if (e.id < n && opts.completedChains !== false) {
      chain = withVtd(dma, () => view.decodeChain(e.id, p));
    }
    if (e.id >= n) {
      // §2.7.8: the id is a head index below Queue Size (Linux BAD_RING "id %u out of range").
      error = decodeError("USED_ID_OUT_OF_RANGE", `used position ${p} names id ${e.id} >= ${n}`, p);
    } else if (chain !== undefined && !outstandingHeads.has(e.id)) {
      // §2.7.8.1: len counts bytes written into the writable part. Only checked when the head's
      // descriptors were not re-used for an outstanding chain since (else they describe another
      // buffer); a freed chain's descriptors are still the driver's last ones for that head.
      const c = chain;
      if (c.error === null && e.len > c.writableBytes) {
        error = decodeError(
          "USED_LEN_EXCEEDS_CAPACITY",
          `used position ${p}: len ${e.len} > ${c.writableBytes} writable bytes of head ${e.id}`,
          p,
        );
      }
    }
    report.completed.push({
      position: p,
      id: e.id,
      len: e.len,
      error,
      chain,
      reused: e.id < n ? outstandingHeads.has(e.id) : undefined,
    });
  }
}

function inspectPacked(
  spec: QueueSpec,
  opts: InspectOptions,
  dma: DmaAddressSpace,
  useQemu: boolean,
  report: QueueReport,
): void {
  const n = spec.size;
  const view = new PackedRingView({
    memory: opts.memory,
    dma,
    ramSize: opts.ramSize,
    size: n,
    descAddr: spec.descAddr,
    driverAddr: spec.driverAddr,
    deviceAddr: spec.deviceAddr,
    features: spec.features,
  });
  const guess = inferPackedPositions(view);
  report.packed = { driverEvent: view.driverEvent, deviceEvent: view.deviceEvent, inferred: guess };
  const q = spec.qemuStatus;
  let pos: DevicePosition;
  const given = opts.devicePosition;
  if (given) {
    pos = {
      lastAvailIdx: given.lastAvailIdx,
      usedIdx: given.usedIdx,
      availWrap: given.availWrap ?? 1,
      usedWrap: given.usedWrap ?? 1,
      inUse: given.inUse ?? 0,
      source: "given",
      basis: guess.basis,
    };
  } else if (useQemu && q && q["last-avail-idx"] !== undefined) {
    // QEMU does not report wrap counters: take them from the inference, re-based on QEMU's slots.
    // The used position lies within one lap behind the driver's position (§2.8.21).
    const u = q["used-idx"];
    const usedWrap = u === guess.usedIdx
      ? guess.usedWrap
      : u < guess.driverIdx
      ? guess.driverWrap
      : guess.driverWrap ^ 1;
    const availWrap = q["last-avail-idx"] < q["used-idx"] ? usedWrap ^ 1 : usedWrap;
    pos = {
      lastAvailIdx: q["last-avail-idx"],
      usedIdx: q["used-idx"],
      availWrap,
      usedWrap,
      inUse: q.inuse,
      source: "qemu",
      basis: guess.basis,
    };
  } else {
    pos = {
      lastAvailIdx: guess.usedIdx,
      usedIdx: guess.usedIdx,
      availWrap: guess.usedWrap,
      usedWrap: guess.usedWrap,
      inUse: 0,
      source: "memory",
      basis: guess.basis,
    };
    report.notes.push(
      "device position and wrap counters inferred from the AVAIL/USED bits (nothing in flight)",
    );
  }
  report.position = pos;
  if (guess.basis === "inconsistent") {
    report.notes.push("AVAIL bits change lap more than once: the ring looks corrupt");
  }
  // Outstanding chains: pop from the device's position while slots are available (§2.8.1).
  let slot = pos.lastAvailIdx;
  let wrap = pos.availWrap ?? 1;
  let slots = 0;
  while (slots < n && view.isAvailable(slot, wrap)) {
    const r = withVtd(dma, () => view.decodeChain(slot, wrap));
    report.outstanding.push(r.chain);
    slots += r.chain.ringDescriptors;
    slot = r.slot;
    wrap = r.wrap;
    if (r.chain.error !== null) break;
  }
  // Used slots (AVAIL == USED, written by the device), checked as the driver would (§2.8.5).
  for (let s = 0; s < n; s++) {
    const d = view.descriptor(s);
    const a = (d.flags >> 7) & 1;
    const u = (d.flags >> 15) & 1;
    if (a !== u || (d.flags === 0 && d.len === 0 && d.next === 0 && d.addr === 0)) continue;
    report.completed.push({
      position: s,
      id: d.next,
      len: d.len,
      wrap: a,
      error: d.next >= n
        ? decodeError("USED_ID_OUT_OF_RANGE", `used slot ${s} names buffer id ${d.next} >= ${n}`, s)
        : null,
    });
  }
}

/**
 * Pops the outstanding chains with our device engine and makes its verdict authoritative: the
 * chain it fails on carries the engine's error; chains after it are marked as never reached (the
 * device is broken, NEEDS_RESET). Every disagreement with the walker is recorded.
 */
function crossCheckEngine(
  spec: QueueSpec,
  opts: InspectOptions,
  dma: DmaAddressSpace,
  report: QueueReport,
): void {
  const pos = report.position!;
  const e = popOutstandingWithEngine({
    memory: opts.memory,
    dma,
    layout: spec.layout,
    size: spec.size,
    descAddr: spec.descAddr,
    driverAddr: spec.driverAddr,
    deviceAddr: spec.deviceAddr,
    features: spec.features,
    lastAvailIdx: pos.lastAvailIdx,
    availWrap: pos.availWrap,
    inPlace: opts.scratchMemory ?? false,
  });
  const mism: string[] = [];
  const walker = report.outstanding;
  // Packed AVAIL/USED bits were re-expressed in lap 1 on the rebased copy: compare the rest.
  const flagMask = spec.layout === "packed" ? 0x7f7f : 0xffff;
  e.chains.forEach((ec, k) => {
    const w = walker[k];
    const tag = `chain ${k} (position ${ec.position})`;
    if (w === undefined) {
      mism.push(`${tag}: popped by the engine, not found by the walker`);
      return;
    }
    if (w.position !== ec.position) mism.push(`${tag}: walker position ${w.position}`);
    if (w.id !== ec.id) mism.push(`${tag}: id engine ${ec.id}, walker ${w.id}`);
    if (w.ringDescriptors !== ec.ringDescriptors) {
      mism.push(
        `${tag}: ring descriptors engine ${ec.ringDescriptors}, walker ${w.ringDescriptors}`,
      );
    }
    const ed = ec.descriptors.filter((d) => d.inIndirect || !(d.flags & VIRTQ_DESC_F_INDIRECT));
    if (ec.indirect !== (w.indirect !== null)) mism.push(`${tag}: indirect differs`);
    if (ed.length !== w.descriptors.length) {
      mism.push(`${tag}: ${ed.length} descriptors (engine) vs ${w.descriptors.length} (walker)`);
    } else {
      ed.forEach((d, i) => {
        const x = w.descriptors[i];
        if (
          u64Compare(d.addr, x.addr) !== 0 || d.len !== x.len ||
          (d.flags & flagMask) !== (x.flags & flagMask)
        ) {
          mism.push(`${tag}: descriptor ${i} differs`);
        }
      });
    }
    if (ec.readableBytes !== w.readableBytes || ec.writableBytes !== w.writableBytes) {
      mism.push(`${tag}: byte totals differ`);
    }
    if (w.error !== null) mism.push(`${tag}: walker rejects it (${w.error.code}), engine accepts`);
  });
  const k = e.chains.length;
  if (e.error !== null && e.errorPosition === null) {
    // Activation refused (QUEUE_SIZE_INVALID, RING_MISALIGNED, RING_UNMAPPED): the device
    // consumes nothing; the walker's chains show what the driver offered.
    if (!report.errors.some((x) => x.code === e.error!.code)) {
      mism.push(`engine refuses activation with ${e.error.code}, the inspector does not`);
      report.errors.push(e.error);
    }
    for (const w of walker) w.notes.push("not reached: the device refuses to activate the queue");
  } else if (e.error !== null) {
    const w = walker[k];
    // The engine faults on a buffer in a page the capture did not keep: a limit of the image,
    // not of the guest. The walker (which knows RAM from captured pages) has the verdict then,
    // including any later error in the same chain.
    const captureLimit = e.error.code === "DESC_BUFFER_FAULT" && w !== undefined &&
      w.error?.code !== "DESC_BUFFER_FAULT" && w.notes.some((n) => n.includes("not kept"));
    if (captureLimit) {
      report.notes.push(
        `engine stopped at chain ${k}: a buffer lies in pages the capture did not keep ` +
          `(not a guest error); later chains were decoded by the walker only`,
      );
    } else {
      if (w === undefined) {
        // A ring-level error (e.g. AVAIL_IDX_JUMP) the walker reports for the queue.
        if (!report.errors.some((x) => x.code === e.error!.code)) {
          mism.push(`engine error ${e.error.code} with no walker chain ${k}`);
        }
      } else if (!sameFinding(e.error.code, w.error?.code)) {
        mism.push(`chain ${k}: engine ${e.error.code}, walker ${w.error?.code ?? "accepts"}`);
      }
      // The engine ran on a rebased copy: its message counts positions from the device's
      // position. Keep the walker's wording (image positions) when both agree on the code.
      const rebased: DecodeError = {
        ...e.error,
        message: `${e.error.message} [engine positions count from the device position ` +
          `${pos.lastAvailIdx}]`,
      };
      if (w !== undefined) w.error = sameFinding(e.error.code, w.error?.code) ? w.error! : rebased;
      else if (!report.errors.some((x) => x.code === e.error!.code)) report.errors.push(rebased);
      for (let j = k + 1; j < walker.length; j++) {
        walker[j].notes.push("not reached: the device is broken (NEEDS_RESET) by an earlier chain");
      }
    }
  } else if (k < walker.length) {
    mism.push(`engine popped ${k} chains, walker found ${walker.length}`);
  }
  report.engine = {
    name: e.engine,
    popped: k,
    error: e.error,
    errorPosition: e.errorPosition,
    mismatches: mism,
    notes: e.notes,
  };
}
