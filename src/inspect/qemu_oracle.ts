/**
 * QEMU's own view of its virtqueues, the independent oracle our decoding is compared with: the
 * `x-query-virtio*` QMP answers captured in `*.qmp-virtio.json` (and the `qemu_status` copy in a
 * fixture index), validated with zod at the edge.
 *
 * Facts about QEMU 7.2's answers that a reader needs (documented QEMU behaviour, see the tests):
 * - `x-query-virtio-queue-status`: `last-avail-idx`, `used-idx`, `shadow-avail-idx` are the
 *   device's private 16-bit counters (split: free-running; packed: ring slot, wrap counter not
 *   reported); `inuse` counts popped, not yet used elements; `vring-avail`/`vring-used` are the
 *   driver and device areas (packed: event suppression structures).
 * - `x-query-virtio-queue-element` (split only; packed answers `GenericError "Packed ring not
 *   supported"`): without an index it reads avail ring slot `last-avail-idx % num`, with one slot
 *   `index % num`; `index` and `avail.ring` are both the **head descriptor index** read there;
 *   `descs` lists the chain **in reverse order** (last descriptor first); a head with
 *   `VIRTQ_DESC_F_INDIRECT` is replaced by its table's entries; the walk stops silently after
 *   `num` (or table-size) descriptors and at a `next` out of range.
 *
 * @module
 */

import { QemuOracleSchema } from "./schemas.ts";
import type { U64 } from "../memory/u64.ts";
import { InspectInputError } from "./inspect_error.ts";

/** One `x-query-virtio-queue-status` answer (QEMU's private queue state). */
export interface QemuQueueStatus {
  /** Device name. */
  name: string;
  /** Queue index. */
  "queue-index": number;
  /** Elements popped and not yet pushed back. */
  inuse: number;
  /** Queue Size in use. */
  "vring-num": number;
  /** Device's default Queue Size. */
  "vring-num-default": number;
  /** Legacy ring alignment. */
  "vring-align": number;
  /** Descriptor area address. */
  "vring-desc": U64;
  /** Driver area address (split: available ring). */
  "vring-avail": U64;
  /** Device area address (split: used ring). */
  "vring-used": U64;
  /** Next avail position the device pops (split: free-running; packed: slot). */
  "last-avail-idx"?: number;
  /** QEMU's cached avail idx (split) / avail slot (packed). */
  "shadow-avail-idx"?: number;
  /** Next used position (split: free-running; packed: slot). */
  "used-idx": number;
  /** Used index at the last used-buffer notification. */
  "signalled-used": number;
  /** Whether `signalled-used` is meaningful. */
  "signalled-used-valid": boolean;
}

/** One `x-query-virtio-queue-element` answer: a chain as QEMU decodes it. */
export interface QemuQueueElement {
  /** Device name. */
  name: string;
  /** The head descriptor index (see the module notes). */
  index: number;
  /** The chain's descriptors, last first. */
  descs: QemuDesc[];
  /** Avail ring `idx`, `flags` and the head read (`ring`). */
  avail?: { idx: number; flags: number; ring: number };
  /** Used ring `idx` and `flags`. */
  used?: { idx: number; flags: number };
}

/** A captured `*.qmp-virtio.json` file, validated (the parts the inspector uses). */
export interface QemuOracle {
  /** Devices listed by `x-query-virtio`. */
  "x-query-virtio": { name: string; path: string }[];
  /** Per QOM path: device name, status and queues with their element queries. */
  devices: Record<string, {
    name: string;
    status: { "num-vqs": number };
    queues: {
      queue: number;
      status: QemuQueueStatus;
      elements: {
        index_arg: number | null;
        result: { return: QemuQueueElement } | { error: { class: string; desc: string } };
      }[];
    }[];
  }>;
}

/** One element query and QEMU's answer (an element or an error such as packed rings). */
export interface QemuElementQuery {
  /** The `index` argument passed (`null`: none, QEMU used `last-avail-idx`). */
  indexArg: number | null;
  /** The decoded element, when QEMU answered one. */
  element?: QemuQueueElement;
  /** QEMU's error text, when it refused (e.g. `"Packed ring not supported"`). */
  error?: string;
}

/** QEMU's view of one queue. */
export interface QemuQueueView {
  /** QOM path of the device backend. */
  path: string;
  /** Device name, e.g. `"virtio-blk"`. */
  device: string;
  /** Queue index. */
  queue: number;
  /** Status answer. */
  status: QemuQueueStatus;
  /** Element queries in capture order. */
  elements: QemuElementQuery[];
}

/**
 * Validates a parsed `*.qmp-virtio.json` (use {@link parseExactJson} so 64-bit addresses stay
 * exact) and flattens it to one view per queue.
 * @param json the parsed file.
 * @param file file name for errors.
 * @returns views keyed `"<path>#<queue>"`.
 * @throws InspectInputError naming the first invalid field.
 */
export function parseQemuOracle(json: unknown, file: string): Map<string, QemuQueueView> {
  const r = QemuOracleSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InspectInputError(
      file,
      issue.path.map(String).join("."),
      issue.message,
      "pass the x-query-virtio capture (*.qmp-virtio.json) of the same run, unedited",
    );
  }
  const oracle: QemuOracle = r.data;
  const out = new Map<string, QemuQueueView>();
  for (const [path, dev] of Object.entries(oracle.devices)) {
    for (const q of dev.queues) {
      out.set(oracleKey(path, q.queue), {
        path,
        device: dev.name,
        queue: q.queue,
        status: q.status,
        elements: q.elements.map((e) =>
          "return" in e.result
            ? { indexArg: e.index_arg, element: e.result.return }
            : { indexArg: e.index_arg, error: e.result.error.desc }
        ),
      });
    }
  }
  return out;
}

/** The key of a queue in {@link parseQemuOracle}'s map. */
export function oracleKey(path: string, queue: number): string {
  return `${path}#${queue}`;
}

/** QEMU's descriptor flag names (`qmp_decode_vring_desc_flags`), as bits. */
export const QEMU_DESC_FLAG_BITS: Readonly<Record<string, number>> = Object.freeze({
  next: 1,
  write: 2,
  indirect: 4,
  avail: 1 << 7,
  used: 1 << 15,
});

/**
 * QEMU's flag names for a descriptor's `flags`, in the order QEMU prints them: it walks the
 * table next, write, indirect, avail, used and **prepends** each name, so the list comes out
 * reversed (`["write", "next"]` for flags 3). Bits QEMU has no name for are dropped.
 */
export function qemuFlagNames(flags: number): string[] {
  const out: string[] = [];
  for (const [name, bit] of Object.entries(QEMU_DESC_FLAG_BITS)) {
    if (flags & bit) out.unshift(name);
  }
  return out;
}

/** A descriptor as QEMU lists it, with exact address. */
export interface QemuDesc {
  /** Buffer address (exact u64). */
  addr: U64;
  /** Length in bytes. */
  len: number;
  /** QEMU flag names. */
  flags: string[];
}
