/**
 * Outstanding chains popped by **our device-side engines** (`SplitDeviceQueue`,
 * `PackedDeviceQueue`) from a captured ring, starting at the device's position (QEMU's
 * `last_avail_idx`, or the inferred one), so they are decoded exactly as our device would.
 *
 * The engines start at position 0 (packed: slot 0, wrap counter 1) and write to memory as they
 * pop (`avail_event`, device event suppression). So the inspector never runs them on the image:
 * it pops from a **scratch copy** whose ring is **rebased** without changing any chain:
 * - split: available ring entries `last_avail_idx + k` are moved to positions `k` and `idx`
 *   becomes the outstanding count (the descriptor table is untouched, §2.7.6 positions are
 *   taken modulo Queue Size anyway);
 * - packed: descriptor slots are rotated so the device's slot comes first, and AVAIL/USED bits
 *   are rewritten from each slot's lap to lap 1 (wrap counter 1), so availability, chain
 *   continuation across the ring end (§2.8.6) and IDs are as in the image.
 * With `VIRTIO_F_IN_ORDER` negotiated, rebasing moves heads, so that bit is withheld from the
 * engine (its in-order check is not applied; a note says so).
 *
 * @module
 */

import { GuestMemory } from "../memory/guest_memory.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { DmaTranslation, translateContiguous } from "../dma/types.ts";
import { DMA_ACCESS_READ } from "../dma/errors.ts";
import type { U64 } from "../memory/u64.ts";
import { VIRTQ_DESC_SIZE } from "../virtio/constants.ts";
import { isVirtqError, VIRTQ_ERRORS } from "../virtio/errors.ts";
import { featureBit, VIRTIO_F_IN_ORDER } from "../virtio/features.ts";
import type { Chain } from "../virtio/chain.ts";
import type { DeviceQueue, RingLayout } from "../virtio/queue.ts";
import { createDeviceQueue } from "../virtio/factory.ts";
import type { DecodeError } from "./decoded_chain.ts";

/** One chain as the engine popped it (descriptor data only; positions are the image's). */
export interface EngineChain {
  /** Split: free-running avail position; packed: head ring slot (in the image). */
  position: number;
  /** Id the used element would carry (split head / packed buffer ID). */
  id: number;
  /** Ring descriptors / slots occupied. */
  ringDescriptors: number;
  /** True when the chain went through an indirect table. */
  indirect: boolean;
  /** Every descriptor the engine recorded, in order (the indirect descriptor included). */
  descriptors: { addr: U64; len: number; flags: number; inIndirect: boolean }[];
  /** Device-readable / device-writable byte totals. */
  readableBytes: number;
  /** Device-writable bytes. */
  writableBytes: number;
}

/** What the engine popped from the rebased copy. */
export interface EngineDecode {
  /** Which engine ran. */
  engine: "SplitDeviceQueue" | "PackedDeviceQueue";
  /** Chains popped, in order. */
  chains: EngineChain[];
  /** The error that stopped it (queue broken), or `null` when the ring ran dry. */
  error: DecodeError | null;
  /** Position (split avail position / packed slot in the image) the error was raised at. */
  errorPosition: number | null;
  /** Notes (e.g. IN_ORDER withheld). */
  notes: string[];
}

/** A deep copy of guest memory (same regions, copied bytes). Cold path. */
export function cloneGuestMemory(memory: GuestMemory): GuestMemory {
  return new GuestMemory(memory.regions.map((r) => ({
    gpa: r.gpa,
    size: r.size,
    backing: r.bytes.slice().buffer,
    private: r.private,
    name: r.name,
  })));
}

/** What {@link popOutstandingWithEngine} needs. */
export interface EnginePopOptions {
  /** Image memory (not modified). */
  memory: GuestMemory;
  /** Device DMA view. */
  dma: DmaAddressSpace;
  /** Layout. */
  layout: RingLayout;
  /** Queue Size. */
  size: number;
  /** Ring addresses. */
  descAddr: U64;
  /** Driver area. */
  driverAddr: U64;
  /** Device area. */
  deviceAddr: U64;
  /** Negotiated features. */
  features: bigint;
  /** Split: free-running `last_avail_idx`; packed: the device's next avail slot. */
  lastAvailIdx: number;
  /** Packed: the device's avail wrap counter. */
  availWrap?: number;
  /** True when `memory` is a throwaway copy the engine may rebase and write (no clone). */
  inPlace?: boolean;
}

function toDecodeError(e: unknown): DecodeError {
  if (isVirtqError(e)) {
    return { code: e.code, message: e.message, spec: VIRTQ_ERRORS[e.code].spec, index: e.index };
  }
  throw e;
}

function engineChain(c: Chain, position: number): EngineChain {
  const descriptors = [];
  for (let i = 0; i < c.descCount; i++) {
    descriptors.push({
      addr: c.descAddr(i),
      len: c.descLen[i],
      flags: c.descFlags[i],
      inIndirect: c.descInIndirect[i] === 1,
    });
  }
  return {
    position,
    id: c.id,
    ringDescriptors: c.ringDescriptors,
    indirect: c.indirect,
    descriptors,
    readableBytes: c.readableBytes,
    writableBytes: c.writableBytes,
  };
}

/**
 * Pops every outstanding chain with our device engine from a rebased scratch copy of the image
 * (see the module notes), until none is available or the engine raises an error.
 */
export function popOutstandingWithEngine(o: EnginePopOptions): EngineDecode {
  const n = o.size;
  const engine = o.layout === "split" ? "SplitDeviceQueue" : "PackedDeviceQueue";
  const notes: string[] = [];
  let features = o.features;
  if (features & featureBit(VIRTIO_F_IN_ORDER)) {
    features &= ~featureBit(VIRTIO_F_IN_ORDER);
    notes.push("VIRTIO_F_IN_ORDER withheld from the engine (rebased ring): in-order not checked");
  }
  const scratch = o.inPlace ? o.memory : cloneGuestMemory(o.memory);
  const tr = new DmaTranslation();
  // Rebase the scratch ring so that the engine's start (0 / slot 0, wrap 1) is our position.
  let outstanding = n;
  if (o.layout === "split") {
    const avail = translateContiguous(o.dma, o.driverAddr, 4 + 2 * n, DMA_ACCESS_READ, tr);
    const availIdx = scratch.readU16(avail + 2);
    outstanding = (availIdx - o.lastAvailIdx) & 0xffff;
    if (outstanding <= n) {
      const heads: number[] = [];
      for (let k = 0; k < outstanding; k++) {
        heads.push(scratch.readU16(avail + 4 + 2 * ((o.lastAvailIdx + k) % n)));
      }
      heads.forEach((h, k) => scratch.writeU16(avail + 4 + 2 * k, h));
      scratch.writeU16(avail + 2, outstanding);
    } else {
      // Keep the jump visible to the engine: same distance from 0 as from last_avail_idx.
      scratch.writeU16(avail + 2, outstanding);
    }
  } else {
    const desc = translateContiguous(o.dma, o.descAddr, VIRTQ_DESC_SIZE * n, DMA_ACCESS_READ, tr);
    const bytes = scratch.view(desc, VIRTQ_DESC_SIZE * n);
    const copy = bytes.slice();
    const w = o.availWrap ?? 1;
    for (let k = 0; k < n; k++) {
      const from = (o.lastAvailIdx + k) % n;
      const lap = o.lastAvailIdx + k < n ? w : w ^ 1;
      bytes.set(copy.subarray(from * VIRTQ_DESC_SIZE, (from + 1) * VIRTQ_DESC_SIZE), k * 16);
      if (lap === 0) {
        // Re-express the slot's AVAIL/USED bits (7, 15) in lap 1: flip both (§2.8.1).
        const f = scratch.readU16(desc + k * 16 + 14) ^ 0x8080;
        scratch.writeU16(desc + k * 16 + 14, f);
      }
    }
  }
  const out: EngineDecode = { engine, chains: [], error: null, errorPosition: null, notes };
  let q: DeviceQueue;
  const opts = {
    memory: scratch,
    dma: o.dma,
    size: n,
    addresses: { descAddr: o.descAddr, driverAddr: o.driverAddr, deviceAddr: o.deviceAddr },
    features,
  };
  try {
    // The factory builds SplitDeviceQueue / PackedDeviceQueue with the default (strict) policy.
    q = createDeviceQueue(o.layout, opts);
  } catch (e) {
    out.error = toDecodeError(e);
    return out;
  }
  let slots = 0;
  for (let k = 0; k <= n; k++) {
    const position = o.layout === "split"
      ? (o.lastAvailIdx + k) & 0xffff
      : (o.lastAvailIdx + slots) % n;
    let c: Chain | null;
    try {
      c = q.pop();
    } catch (e) {
      out.error = toDecodeError(e);
      out.errorPosition = position;
      return out;
    }
    if (c === null) break;
    out.chains.push(engineChain(c, position));
    slots += c.ringDescriptors;
  }
  return out;
}
