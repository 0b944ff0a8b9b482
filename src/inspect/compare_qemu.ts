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
import { u64Compare } from "../memory/u64.ts";
import type { DecodedChain } from "./decoded_chain.ts";
import { inspectQueue, type QueueSpec } from "./inspect_queue.ts";
import { SplitRingView } from "./split_view.ts";
import { qemuFlagNames, type QemuQueueView } from "./qemu_oracle.ts";

/** QEMU 7.2 behaviours the comparison accounts for, by name (documented, not hidden). */
export const QEMU_QUIRKS: Readonly<Record<string, string>> = Object.freeze({
  "element-descs-reversed":
    "x-query-virtio-queue-element prepends each descriptor to its list, so descs are in reverse " +
    "chain order (last descriptor first); we compare against our chain reversed",
  "element-flags-reversed":
    "flag names are prepended too: QEMU prints ['write', 'next'] for flags 3",
  "element-index-is-head":
    "element 'index' and 'avail.ring' are both the head descriptor index read from the avail " +
    "ring slot, not the slot or the avail position",
  "element-index-arg-modulo":
    "the optional index argument selects avail ring slot index % num (65535 is slot num-1); " +
    "without it QEMU reads slot last_avail_idx % num, which is stale when nothing is outstanding",
  "element-indirect-head-only":
    "the head's indirect descriptor is replaced by its table's entries and not listed itself",
  "packed-elements-unsupported":
    "x-query-virtio-queue-element answers GenericError 'Packed ring not supported' for packed " +
    "rings, so packed chains are compared through status fields only",
  "shadow-avail-idx-cached":
    "shadow-avail-idx is QEMU's cached copy of avail idx from its last read, older than memory " +
    "when the driver added buffers since (not compared)",
  "packed-positions-no-wrap":
    "for packed rings last-avail-idx / used-idx are ring slots; the wrap counters are not reported",
  "ring-reset-unknown-feature":
    "QEMU 7.2 has no name for VIRTIO_F_RING_RESET (bit 40) and reports it in unknown-dev-features",
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
  /** Quirk names that applied. */
  quirks: string[];
}

const s = (v: unknown) => typeof v === "bigint" ? `${v}` : JSON.stringify(v);

/**
 * Compares our decoding of `spec` in `memory` with QEMU's view of the same queue.
 * Positions are taken **from memory only** (not from QEMU's status) so that they are checked.
 */
export function compareWithQemu(
  spec: QueueSpec,
  memory: GuestMemory,
  ramSize: number,
  qemu: QemuQueueView,
): QemuComparison {
  const diffs: QemuDifference[] = [];
  const quirks = new Set<string>();
  let compared = 0;
  const eq = (field: string, ours: unknown, theirs: unknown) => {
    compared++;
    const same = (typeof ours === "bigint" || typeof theirs === "bigint")
      ? u64Compare(ours as number, theirs as number) === 0
      : ours === theirs;
    if (!same) diffs.push({ field, ours: s(ours), qemu: s(theirs) });
  };
  const st = qemu.status;
  eq("status.vring-num", spec.size, st["vring-num"]);
  eq("status.vring-desc", spec.descAddr, st["vring-desc"]);
  eq("status.vring-avail", spec.driverAddr, st["vring-avail"]);
  eq("status.vring-used", spec.deviceAddr, st["vring-used"]);
  quirks.add("shadow-avail-idx-cached");
  const report = inspectQueue({ ...spec, qemuStatus: undefined }, {
    memory,
    ramSize,
    positions: "memory",
  });
  eq("status.inuse", report.position?.inUse, st.inuse);
  eq("status.used-idx", report.position?.usedIdx, st["used-idx"]);
  eq("status.last-avail-idx", report.position?.lastAvailIdx, st["last-avail-idx"]);
  if (spec.layout === "packed") {
    quirks.add("packed-positions-no-wrap");
    for (const q of qemu.elements) {
      compared++;
      if (q.error === "Packed ring not supported") quirks.add("packed-elements-unsupported");
      else {
        diffs.push({
          field: `element[${q.indexArg}]`,
          ours: "(packed: compare not implemented for an answered element)",
          qemu: s(q.element ?? q.error),
        });
      }
    }
    return { differences: diffs, compared, quirks: [...quirks] };
  }
  const view = new SplitRingView({
    memory,
    dma: new IdentityAddressSpace(),
    ramSize,
    size: spec.size,
    descAddr: spec.descAddr,
    availAddr: spec.driverAddr,
    usedAddr: spec.deviceAddr,
    features: spec.features,
  });
  const lastAvail = st["last-avail-idx"] ?? 0;
  for (const q of qemu.elements) {
    const tag = `element[${q.indexArg ?? "none"}]`;
    if (q.element === undefined) {
      diffs.push({ field: tag, ours: "(an element)", qemu: s(q.error) });
      continue;
    }
    const el = q.element;
    quirks.add("element-index-arg-modulo");
    quirks.add("element-index-is-head");
    const slotPos = q.indexArg ?? lastAvail;
    const head = view.availRing(slotPos);
    eq(`${tag}.index`, head, el.index);
    if (el.avail) {
      eq(`${tag}.avail.ring`, head, el.avail.ring);
      eq(`${tag}.avail.idx`, view.state.availIdx, el.avail.idx);
      eq(`${tag}.avail.flags`, view.state.availFlags, el.avail.flags);
    }
    if (el.used) {
      eq(`${tag}.used.idx`, view.state.usedIdx, el.used.idx);
      eq(`${tag}.used.flags`, view.state.usedFlags, el.used.flags);
    }
    const chain = view.decodeChain(head, slotPos);
    if (chain.indirect) quirks.add("element-indirect-head-only");
    quirks.add("element-descs-reversed");
    quirks.add("element-flags-reversed");
    compareDescs(tag, chain, el.descs, eq);
  }
  return { differences: diffs, compared, quirks: [...quirks] };
}

function compareDescs(
  tag: string,
  chain: DecodedChain,
  descs: ReadonlyArray<{ addr: number | bigint; len: number; flags: string[] }>,
  eq: (field: string, ours: unknown, theirs: unknown) => void,
): void {
  const ours = [...chain.descriptors].reverse();
  eq(`${tag}.descs.length`, ours.length, descs.length);
  const n = Math.min(ours.length, descs.length);
  for (let i = 0; i < n; i++) {
    eq(`${tag}.descs[${i}].addr`, ours[i].addr, descs[i].addr);
    eq(`${tag}.descs[${i}].len`, ours[i].len, descs[i].len);
    eq(
      `${tag}.descs[${i}].flags`,
      qemuFlagNames(ours[i].flags).join(","),
      descs[i].flags.join(","),
    );
  }
}
