/**
 * Our decoding of a queue compared with QEMU's own (the `x-query-virtio*` oracle): sizes, ring
 * addresses, ring indices and flags, the device's positions and in-use count, and, for every
 * element QEMU lists (split), the same descriptors in the same order.
 *
 * Known QEMU 7.2 quirks are normalised here, each named in {@link QEMU_QUIRKS}, so a difference
 * that remains is a bug in our engine or in QEMU, never hidden.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { IdentityAddressSpace } from "../dma/identity.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { u64Add, u64Compare } from "../memory/u64.ts";
import { DMA_ACCESS_READ } from "../dma/errors.ts";
import { DmaTranslation } from "../dma/types.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_SIZE } from "../virtio/constants.ts";
import type { DecodedChain, DecodedDescriptor } from "./decoded_chain.ts";
import { inspectQueue, type QueueSpec } from "./inspect_queue.ts";
import { readDesc, SplitRingView } from "./split_view.ts";
import { VtdAddressSpace, VtdTranslationFault } from "./vtd_space.ts";
import { qemuFlagNames, type QemuQueueView } from "./qemu_oracle.ts";

/**
 * QEMU 7.2 behaviours the comparison accounts for, by name (documented, not hidden). A name is
 * reported in {@link QemuComparison.quirks} only when its normalisation changed the outcome: the
 * comparison agrees with it and would have found a difference without it.
 */
export const QEMU_QUIRKS: Readonly<Record<string, string>> = Object.freeze({
  "element-descs-reversed":
    "x-query-virtio-queue-element prepends each descriptor to its list, so descs are in reverse " +
    "chain order (last descriptor first); we compare against our chain reversed. Observed only " +
    "when the chain in order differs from QEMU's list (two or more distinct descriptors)",
  "element-flags-reversed":
    "flag names are prepended too: QEMU prints ['write', 'next'] for flags 3. Observed only when " +
    "a listed descriptor has two or more named flags",
  "element-index-is-head":
    "element 'index' is the head descriptor index read from the avail ring slot, not the slot. " +
    "Observed only when the head differs from the slot",
  "element-index-arg-modulo":
    "the optional index argument selects avail ring slot index % num (65535 is slot num-1), it " +
    "is not refused when >= num. Observed only for an argument >= Queue Size (without one QEMU " +
    "reads slot last_avail_idx % num, the spec's own rule: not a quirk)",
  "element-indirect-head-only":
    "the head's indirect descriptor is replaced by its table's entries and not listed itself. " +
    "Observed only for a chain through an indirect table",
  "packed-elements-unsupported":
    "x-query-virtio-queue-element answers GenericError 'Packed ring not supported' for packed " +
    "rings, so packed chains are compared through status fields only. Observed per such answer",
  "shadow-avail-idx-cached":
    "shadow-avail-idx is not the driver's index in memory: split, QEMU's copy of avail idx from " +
    "its last read (older when the driver added buffers since); packed, the slot after its last " +
    "pop. Checked by relation instead (last-avail-idx <= shadow-avail-idx <= the driver's index " +
    "in memory, distances mod 2^16 (packed: slots) within Queue Size). Observed only when " +
    "shadow-avail-idx differs from the driver's index in memory",
  "element-indirect-unmapped-reads-zero":
    "behind a vIOMMU, an indirect table whose IOVA no longer translates (a finished request's " +
    "table the guest unmapped, e.g. iommu.strict=1) is read as zeros, not refused: " +
    "address_space_cache_init over the IOMMU region keeps no host pointer and reports the whole " +
    "length, so 'Cannot map indirect buffer' is not raised; each descriptor read then goes " +
    "through address_space_read_cached_slow, the failed translation routes it to " +
    "io_mem_unassigned, whose read returns 0. A zero descriptor has no NEXT, so QEMU lists one " +
    "descriptor {addr 0, len 0, flags []} (none when the table holds no whole entry). We " +
    "compare against the table read that way (entries whose IOVA does not translate as zeros). " +
    "Observed only when an entry QEMU lists lies at an IOVA that does not translate",
  "ring-reset-unknown-feature":
    "QEMU 7.2 has no name for VIRTIO_F_RING_RESET (bit 40) and reports it in " +
    "unknown-dev-features; handled when features are read (featuresFromQemuReport), not by " +
    "compareWithQemu, which never reports it",
});

/** One difference between our decoding and QEMU's. */
export interface QemuDifference {
  /** What was compared, e.g. `status.used-idx` or `element[65535].descs`. */
  field: string;
  /** Our value. */
  ours: string;
  /** QEMU's value. */
  qemu: string;
}

/** The outcome of comparing one queue. */
export interface QemuComparison {
  /** Differences found (empty when we agree). */
  differences: QemuDifference[];
  /** Number of fields and descriptors compared, so a vacuous comparison is visible. */
  compared: number;
  /** Quirk names (keys of {@link QEMU_QUIRKS}) whose normalisation changed the outcome. */
  quirks: string[];
  /**
   * Why positions and elements were not compared (the ring areas cannot be read from the
   * capture: the queue's own error says why), or absent when they were.
   */
  skipped?: string;
}

const s = (v: unknown) => typeof v === "bigint" ? `${v}` : JSON.stringify(v);

/**
 * Compares our decoding of `spec` in `memory` with QEMU's view of the same queue.
 * Positions are taken **from memory only** (not from QEMU's status) so that they are checked.
 *
 * Status relations checked (QEMU 7.2 `x-query-virtio-queue-status`, read while QEMU holds the
 * queue, so no used-ring update is half done):
 * - `used-idx` equals the device's used position in memory (split: the used ring's `idx`;
 *   packed: the used slot inferred from the AVAIL/USED bits); `last-avail-idx` equals it too and
 *   `inuse` is 0 (the memory-only position assumes nothing in flight).
 * - split: `last-avail-idx <= shadow-avail-idx <= avail.idx` (memory), as mod-2^16 distances
 *   whose sum is at most Queue Size (§2.7.6: at most Queue Size buffers outstanding).
 * - packed: `last-avail-idx <= shadow-avail-idx <= the driver's slot` (memory): the slot distance
 *   from `last-avail-idx` to `shadow-avail-idx` is at most the slots the driver made available.
 *
 * Not compared: packed wrap counters (QEMU 7.2 reports slots only), packed elements (QEMU refuses
 * them), `signalled-used` (QEMU's notification state, not in memory).
 *
 * @param spec the queue (addresses, size, features).
 * @param memory the guest memory image.
 * @param ramSize guest RAM size in bytes.
 * @param qemu QEMU's status and element answers for the same queue.
 * @param dma the device's DMA view (default identity; a {@link VtdAddressSpace} for IOVA rings:
 * QEMU reports the addresses the driver wrote, so ring and descriptor addresses compare as IOVAs).
 * @returns the differences, the number of comparisons and the quirks that were needed; when the
 * ring areas cannot be read, only the addresses and size, with `skipped` saying why.
 */
export function compareWithQemu(
  spec: QueueSpec,
  memory: GuestMemory,
  ramSize: number,
  qemu: QemuQueueView,
  dma: DmaAddressSpace = new IdentityAddressSpace(),
): QemuComparison {
  const c = new QemuComparer(spec.size, qemu.status);
  const st = qemu.status;
  c.eq("status.vring-num", spec.size, st["vring-num"]);
  c.eq("status.vring-desc", spec.descAddr, st["vring-desc"]);
  c.eq("status.vring-avail", spec.driverAddr, st["vring-avail"]);
  c.eq("status.vring-used", spec.deviceAddr, st["vring-used"]);
  const report = inspectQueue({ ...spec, qemuStatus: undefined }, {
    memory,
    ramSize,
    positions: "memory",
    dma,
  });
  if (report.position === undefined) {
    // The rings cannot be read (the queue's report has the error): nothing more to compare.
    const why = report.errors.find((e) =>
      e.code !== "RING_MISALIGNED" && e.code !== "QUEUE_SIZE_INVALID"
    ) ?? report.errors[0];
    return {
      differences: c.diffs,
      compared: c.compared,
      quirks: [],
      skipped: `positions and elements not compared: ${why?.message ?? "ring not decoded"}`,
    };
  }
  c.eq("status.inuse", report.position?.inUse, st.inuse);
  c.eq("status.used-idx", report.position?.usedIdx, st["used-idx"]);
  c.eq("status.last-avail-idx", report.position?.lastAvailIdx, st["last-avail-idx"]);
  if (spec.layout === "packed") c.packed(report, qemu.elements);
  else {
    const view = new SplitRingView({
      memory,
      dma,
      ramSize,
      size: spec.size,
      descAddr: spec.descAddr,
      availAddr: spec.driverAddr,
      usedAddr: spec.deviceAddr,
      features: spec.features,
    });
    c.split(view, qemu.elements, memory, dma);
  }
  return { differences: c.diffs, compared: c.compared, quirks: [...c.quirks] };
}

type QemuStatus = QemuQueueView["status"];
type QemuElementAnswer = QemuQueueView["elements"][number];

/** One comparison's tally (differences, count, quirks) and its phases after the addresses. */
class QemuComparer {
  readonly diffs: QemuDifference[] = [];
  readonly quirks = new Set<string>();
  compared = 0;
  readonly #n: number;
  readonly #st: QemuStatus;

  constructor(n: number, st: QemuStatus) {
    this.#n = n;
    this.#st = st;
  }

  /** Compares one field (u64-exact when either side is a bigint). */
  readonly eq = (field: string, ours: unknown, theirs: unknown): void => {
    this.compared++;
    const same = (typeof ours === "bigint" || typeof theirs === "bigint")
      ? u64Compare(ours as number, theirs as number) === 0
      : ours === theirs;
    if (!same) this.diffs.push({ field, ours: s(ours), qemu: s(theirs) });
  };

  /**
   * Checks last <= shadow <= driver: positions mod `modulus`, `pending` the positions from
   * last-avail-idx to the driver's index (at most Queue Size). Records the quirk when it applied.
   */
  shadowRelation(driver: number, modulus: number, pending: number): void {
    const n = this.#n;
    const last = this.#st["last-avail-idx"];
    const shadow = this.#st["shadow-avail-idx"];
    this.compared++;
    const field = "status.shadow-avail-idx";
    const ours = `last-avail-idx ${last} <= it <= driver index ${driver} (memory), ` +
      `${pending} of at most ${n} positions apart`;
    if (last === undefined || shadow === undefined) {
      this.diffs.push({ field, ours, qemu: "absent" });
      return;
    }
    const behind = ((shadow - last) % modulus + modulus) % modulus;
    const ahead = ((driver - shadow) % modulus + modulus) % modulus;
    const ok = shadow < modulus && pending <= n && behind <= pending &&
      (behind + ahead) % modulus === pending % modulus;
    if (!ok) this.diffs.push({ field, ours, qemu: s(shadow) });
    else if (shadow !== driver) this.quirks.add("shadow-avail-idx-cached");
  }

  /** Packed ring: the shadow relation by slots, and each element answer (QEMU refuses them). */
  packed(report: ReturnType<typeof inspectQueue>, elements: readonly QemuElementAnswer[]): void {
    const inferred = report.packed?.inferred;
    if (inferred === undefined) {
      this.diffs.push({
        field: "status.shadow-avail-idx",
        ours: "(packed ring unreadable)",
        qemu: "",
      });
    } else {
      // Slots from last-avail-idx (= the inferred used slot, compared above) to the driver's slot.
      this.shadowRelation(inferred.driverIdx, this.#n, inferred.pendingSlots);
    }
    for (const q of elements) {
      this.compared++;
      if (q.error === "Packed ring not supported") this.quirks.add("packed-elements-unsupported");
      else {
        this.diffs.push({
          field: `element[${q.indexArg}]`,
          ours: "(packed: compare not implemented for an answered element)",
          qemu: s(q.element ?? q.error),
        });
      }
    }
  }

  /** Split ring: the used index in memory, the shadow relation, then every element. */
  split(
    view: SplitRingView,
    elements: readonly QemuElementAnswer[],
    memory: GuestMemory,
    dma: DmaAddressSpace,
  ): void {
    const last = this.#st["last-avail-idx"];
    // The device's used index is written to the used ring with each flush: they are equal.
    this.eq("status.used-idx (used ring idx in memory)", view.state.usedIdx, this.#st["used-idx"]);
    this.shadowRelation(
      view.state.availIdx,
      0x10000,
      (view.state.availIdx - (last ?? 0)) & 0xffff,
    );
    for (const q of elements) this.#splitElement(q, view, memory, dma);
  }

  /** One split element: its slot, head, ring fields and descriptors (with the quirks applied). */
  #splitElement(
    q: QemuElementAnswer,
    view: SplitRingView,
    memory: GuestMemory,
    dma: DmaAddressSpace,
  ): void {
    const n = this.#n;
    const eq = this.eq;
    const last = this.#st["last-avail-idx"];
    const tag = `element[${q.indexArg ?? "none"}]`;
    if (q.element === undefined) {
      this.diffs.push({ field: tag, ours: "(an element)", qemu: s(q.error) });
      return;
    }
    const el = q.element;
    let slot: number;
    if (q.indexArg === null) slot = (last ?? 0) % n; // §2.7.6: slot = idx mod Queue Size
    else if (q.indexArg < n) slot = q.indexArg;
    else {
      // Quirk: an argument beyond the ring is taken modulo Queue Size instead of refused.
      slot = q.indexArg % n;
      this.quirks.add("element-index-arg-modulo");
    }
    const head = view.availRing(slot);
    eq(`${tag}.index`, head, el.index);
    if (el.index === head && head !== slot) this.quirks.add("element-index-is-head");
    if (el.avail) {
      eq(`${tag}.avail.ring`, head, el.avail.ring);
      eq(`${tag}.avail.idx`, view.state.availIdx, el.avail.idx);
      eq(`${tag}.avail.flags`, view.state.availFlags, el.avail.flags);
    }
    if (el.used) {
      eq(`${tag}.used.idx`, view.state.usedIdx, el.used.idx);
      eq(`${tag}.used.flags`, view.state.usedFlags, el.used.flags);
    }
    const decoded = view.decodeChain(head, slot);
    // QEMU's read of a table that no longer translates (zeros), when that is the case.
    const zeroRead = unmappedIndirectAsQemu(decoded, memory, dma);
    const chain = zeroRead ?? decoded;
    const before = this.diffs.length;
    compareDescs(tag, expectedDescs(chain, DESC_QUIRKS), el.descs, eq);
    if (this.diffs.length === before) {
      // Leave-one-out: a quirk applied when QEMU's list differs from our expectation without it.
      for (const quirk of DESC_QUIRKS) {
        const without = DESC_QUIRKS.filter((x) => x !== quirk);
        if (!sameDescs(expectedDescs(chain, without), el.descs)) this.quirks.add(quirk);
      }
      if (zeroRead !== null && !sameDescs(expectedDescs(decoded, DESC_QUIRKS), el.descs)) {
        this.quirks.add("element-indirect-unmapped-reads-zero");
      }
    }
  }
}

/**
 * The chain as QEMU 7.2's `x-query-virtio-queue-element` reads it when the head's indirect table
 * lies (partly) at IOVAs that do not translate through the captured VT-d tables (quirk
 * `element-indirect-unmapped-reads-zero`): each entry QEMU reads is translated on its own, an
 * entry that does not translate reads as 16 zero bytes; the walk follows `next` as QEMU's
 * `virtqueue_split_read_next_desc` does (stops without NEXT or at `next >= len / 16`) and lists at
 * most `len / 16` descriptors.
 * @returns the chain QEMU would list, or `null` when the quirk does not apply: not behind a
 * captured VT-d, no indirect table, the table translates, or an entry translates to a page the
 * capture did not keep or the walk met a table page not captured (QEMU's bytes are unknown).
 */
function unmappedIndirectAsQemu(
  chain: DecodedChain,
  memory: GuestMemory,
  dma: DmaAddressSpace,
): DecodedChain | null {
  const ind = chain.indirect;
  if (!(dma instanceof VtdAddressSpace) || ind === null || chain.descriptors.length > 0) {
    return null;
  }
  const max = Math.floor(ind.len / VIRTQ_DESC_SIZE);
  const out = new DmaTranslation();
  const descriptors: DecodedDescriptor[] = [];
  let zeroed = false;
  /** Entry `i` as QEMU reads it; `undefined` when its bytes are not known from the capture. */
  const entry = (i: number): DecodedDescriptor | undefined => {
    const iova = u64Add(ind.addr, i * VIRTQ_DESC_SIZE);
    if (iova === null) return undefined;
    try {
      dma.translate(iova, VIRTQ_DESC_SIZE, DMA_ACCESS_READ, out);
    } catch (e) {
      // A table page missing from the capture is not a translation failure: unknown bytes.
      if (e instanceof VtdTranslationFault && e.walk.reason === "page-missing") return undefined;
      zeroed = true;
      return { index: i, addr: 0, len: 0, flags: 0, next: 0, inIndirect: true };
    }
    if (out.length < VIRTQ_DESC_SIZE || !memory.contains(out.gpa, VIRTQ_DESC_SIZE)) {
      return undefined;
    }
    return readDesc(memory, out.gpa, i, true);
  };
  let i = 0;
  let d = max > 0 ? entry(0) : undefined;
  while (d !== undefined && descriptors.length < max) {
    descriptors.push(d);
    if (!(d.flags & VIRTQ_DESC_F_NEXT) || d.next >= max) break;
    i = d.next;
    d = entry(i);
    if (d === undefined) return null;
  }
  if (max > 0 && descriptors.length === 0) return null;
  if (!zeroed) return null;
  return { ...chain, descriptors, error: null };
}

/** The quirks that shape QEMU's `descs` list. */
const DESC_QUIRKS: readonly string[] = [
  "element-descs-reversed",
  "element-flags-reversed",
  "element-indirect-head-only",
];

type QemuDescLike = { addr: number | bigint; len: number; flags: string[] };

/** The `descs` QEMU should list for `chain`, with the given quirks applied. */
function expectedDescs(chain: DecodedChain, applied: readonly string[]): QemuDescLike[] {
  const flagsReversed = applied.includes("element-flags-reversed");
  const row = (d: { addr: number | bigint; len: number; flags: number }) => {
    const names = qemuFlagNames(d.flags); // QEMU's (reversed) order
    return { addr: d.addr, len: d.len, flags: flagsReversed ? names : [...names].reverse() };
  };
  const rows = chain.descriptors.map(row);
  // Without the quirk the indirect descriptor itself would head the list (chain order).
  if (chain.indirect !== null && !applied.includes("element-indirect-head-only")) {
    rows.unshift(row(chain.indirect));
  }
  return applied.includes("element-descs-reversed") ? rows.reverse() : rows;
}

function sameDescs(a: readonly QemuDescLike[], b: readonly QemuDescLike[]): boolean {
  return a.length === b.length &&
    a.every((x, i) =>
      u64Compare(x.addr, b[i].addr) === 0 && x.len === b[i].len &&
      x.flags.join(",") === b[i].flags.join(",")
    );
}

function compareDescs(
  tag: string,
  ours: readonly QemuDescLike[],
  descs: readonly QemuDescLike[],
  eq: (field: string, ours: unknown, theirs: unknown) => void,
): void {
  eq(`${tag}.descs.length`, ours.length, descs.length);
  const n = Math.min(ours.length, descs.length);
  for (let i = 0; i < n; i++) {
    eq(`${tag}.descs[${i}].addr`, ours[i].addr, descs[i].addr);
    eq(`${tag}.descs[${i}].len`, ours[i].len, descs[i].len);
    eq(`${tag}.descs[${i}].flags`, ours[i].flags.join(","), descs[i].flags.join(","));
  }
}
