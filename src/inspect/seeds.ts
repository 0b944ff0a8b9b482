/**
 * Real ring states as fuzz seeds: the rings of a captured guest (split and packed, with their
 * indirect tables) extracted as plain bytes, so hostile-driver and hostile-device targets can
 * mutate **from real states** (one targeted corruption of a valid Linux ring finds more than
 * random bytes, which are mostly "index out of table", DENO_NOTES.md).
 *
 * Use from a fuzz target:
 * ```ts
 * const seeds = extractSeedRings(fixture, "scenarioA");          // once, at load
 * fc.constantFrom(...seeds).chain((s) => corruption.map((c) => ({ s, c })));
 * // run: const addrs = placeSeedRing(s, memory, { descGpa, driverGpa, deviceGpa, tablesGpa });
 * //      new SplitDeviceQueue({ memory, dma, size: s.size, addresses: addrs, features: s.features })
 * //      and start popping at s.lastAvailIdx (or rebase as src/inspect/engine_decode.ts does).
 * ```
 * `fuzz/support/real_ring_seeds.ts` has the loader and a ready arbitrary.
 *
 * @module
 */

import { type U64, u64Compare } from "../memory/u64.ts";
import type { RingLayout, VirtqueueAddresses } from "../virtio/queue.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_SIZE } from "../virtio/constants.ts";
import { GUEST_PAGE_SIZE, GuestMemory } from "../memory/guest_memory.ts";
import type { Fixture } from "./fixture.ts";
import type { DecodedChain } from "./decoded_chain.ts";
import { inspectQueue, type QueueSpec } from "./inspect_queue.ts";
import { splitAreaSizes } from "./split_view.ts";
import { fixtureDmaSpace } from "./vtd_space.ts";
import { DmaTranslation, translateContiguous } from "../dma/types.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from "../dma/errors.ts";

/** One real ring state, as bytes (all little-endian, as in guest memory). */
export interface SeedRingState {
  /** `"<source>/<device>/<queue>"`, e.g. `"scenarioA/virtio-net/0"`. */
  name: string;
  /** Layout. */
  layout: RingLayout;
  /** Queue Size. */
  size: number;
  /** Negotiated features. */
  features: bigint;
  /** Descriptor table / ring: `16 * size` bytes. */
  descTable: Uint8Array;
  /** Driver area: split available ring (`6 + 2 size` bytes, `used_event` included); packed
   * driver event suppression (4 bytes). */
  driverArea: Uint8Array;
  /** Device area: split used ring (`6 + 8 size` bytes); packed device event suppression (4). */
  deviceArea: Uint8Array;
  /** The device's position: split free-running `last_avail_idx`; packed next avail slot. */
  lastAvailIdx: number;
  /** Split: free-running used index; packed: next used slot. */
  usedIdx: number;
  /** Packed: avail wrap counter (split: 0). */
  availWrap: number;
  /** Packed: used wrap counter (split: 0). */
  usedWrap: number;
  /** Indirect tables named by the ring's INDIRECT descriptors that the image holds. */
  indirectTables: { addr: U64; bytes: Uint8Array }[];
  /** Number of outstanding chains our device engine pops from this state. */
  outstanding: number;
  /**
   * The ring's original descriptor area address: a GPA, or for a queue behind a vIOMMU its IOVA
   * (such a seed lives in the device's bus address space: ring areas, indirect tables and buffer
   * pages are placed at their IOVAs, and `ramSize` is 2^52).
   */
  descAddr: number;
  /** The original driver area address. */
  driverAddr: number;
  /** The original device area address. */
  deviceAddr: number;
  /** Guest RAM size of the capture, bytes (2^52 for a seed from IOVA rings). */
  ramSize: number;
  /**
   * GPAs (IOVAs for a seed from IOVA rings) of the 4 KiB pages the outstanding chains' buffers
   * touch (contents not kept).
   */
  bufferPages: number[];
}

/**
 * Extracts every readable queue of a fixture as a {@link SeedRingState} (copies; the fixture is
 * not modified). Queues whose ring areas are not in the image are skipped.
 * @param fixture a loaded fixture.
 * @param source label for seed names, e.g. `"scenarioA"`.
 */
export function extractSeedRings(fixture: Fixture, source: string): SeedRingState[] {
  const out: SeedRingState[] = [];
  const m = fixture.memory;
  for (const q of fixture.queues) {
    if (typeof q.descAddr !== "number" || typeof q.driverAddr !== "number") continue;
    if (typeof q.deviceAddr !== "number") continue;
    const sizes = q.layout === "split"
      ? splitAreaSizes(q.size)
      : { desc: VIRTQ_DESC_SIZE * q.size, avail: 4, used: 4 };
    // IOVA rings: read every area through the captured VT-d tables (GPA rings: identity).
    const dma = fixtureDmaSpace(fixture, q);
    const gpaOf = (bus: U64, len: number, access = DMA_ACCESS_READ): number | null => {
      if (dma === undefined) return typeof bus === "number" && m.contains(bus, len) ? bus : null;
      try {
        const g = translateContiguous(dma, bus, len, access, new DmaTranslation());
        return m.contains(g, len) ? g : null;
      } catch {
        return null;
      }
    };
    const descGpa = gpaOf(q.descAddr, sizes.desc);
    const driverGpa = gpaOf(q.driverAddr, sizes.avail);
    const deviceGpa = gpaOf(q.deviceAddr, sizes.used);
    if (descGpa === null || driverGpa === null || deviceGpa === null) continue;
    const r = inspectQueue(q, { memory: m, ramSize: fixture.ramSize, dma });
    const descTable = m.view(descGpa, sizes.desc).slice();
    const tables: SeedRingState["indirectTables"] = [];
    for (let i = 0; i < q.size; i++) {
      const dv = new DataView(descTable.buffer, i * VIRTQ_DESC_SIZE, VIRTQ_DESC_SIZE);
      const flags = dv.getUint16(q.layout === "split" ? 12 : 14, true);
      if (!(flags & VIRTQ_DESC_F_INDIRECT)) continue;
      const addr = m.readU64(descGpa + i * VIRTQ_DESC_SIZE);
      const len = dv.getUint32(8, true);
      if (typeof addr !== "number" || len === 0 || len > VIRTQ_DESC_SIZE * q.size) continue;
      const tableGpa = gpaOf(addr, len);
      if (tableGpa === null || tables.some((t) => u64Compare(t.addr, addr) === 0)) continue;
      tables.push({ addr, bytes: m.view(tableGpa, len).slice() });
    }
    out.push({
      name: `${source}/${q.device}/${q.queue}`,
      layout: q.layout,
      size: q.size,
      features: q.features,
      descTable,
      driverArea: m.view(driverGpa, sizes.avail).slice(),
      deviceArea: m.view(deviceGpa, sizes.used).slice(),
      lastAvailIdx: r.position?.lastAvailIdx ?? 0,
      usedIdx: r.position?.usedIdx ?? 0,
      availWrap: r.position?.availWrap ?? 0,
      usedWrap: r.position?.usedWrap ?? 0,
      indirectTables: tables,
      outstanding: r.outstanding.length,
      descAddr: q.descAddr,
      driverAddr: q.driverAddr,
      deviceAddr: q.deviceAddr,
      ramSize: dma === undefined ? fixture.ramSize : 2 ** 52,
      bufferPages: bufferPagesOf(
        r.outstanding,
        (page) =>
          (gpaOf(page, GUEST_PAGE_SIZE) ?? gpaOf(page, GUEST_PAGE_SIZE, DMA_ACCESS_WRITE)) !== null,
      ),
    });
  }
  return out;
}

/** Where {@link placeSeedRing} writes a seed. */
export interface SeedPlacement {
  /** GPA for the descriptor area (16-byte aligned). */
  descGpa: number;
  /** GPA for the driver area (split: 2-byte aligned; packed: 4). */
  driverGpa: number;
  /** GPA for the device area (split: 4-byte aligned; packed: 4). */
  deviceGpa: number;
  /**
   * GPA where the indirect tables are written one after another (16-byte aligned); the ring's
   * INDIRECT descriptors are patched to point there. Omit to leave tables and pointers alone.
   */
  tablesGpa?: number;
}

/**
 * Writes a seed's areas (and indirect tables) into `memory` and returns the ring addresses to
 * give a device or driver queue. Buffer addresses in descriptors stay the guest's originals.
 * @throws MemoryFault when a target range is not in `memory`.
 */
export function placeSeedRing(
  seed: SeedRingState,
  memory: GuestMemory,
  at: SeedPlacement,
): VirtqueueAddresses {
  memory.write(at.descGpa, seed.descTable);
  memory.write(at.driverGpa, seed.driverArea);
  memory.write(at.deviceGpa, seed.deviceArea);
  if (at.tablesGpa !== undefined) {
    let next = at.tablesGpa;
    for (const t of seed.indirectTables) {
      memory.write(next, t.bytes);
      for (let i = 0; i < seed.size; i++) {
        const a = at.descGpa + i * VIRTQ_DESC_SIZE;
        const flags = memory.readU16(a + (seed.layout === "split" ? 12 : 14));
        if (flags & VIRTQ_DESC_F_INDIRECT && u64Compare(memory.readU64(a), t.addr) === 0) {
          memory.writeU64(a, next);
        }
      }
      next += (t.bytes.length + 15) & ~15;
    }
  }
  return { descAddr: at.descGpa, driverAddr: at.driverGpa, deviceAddr: at.deviceGpa };
}

function bufferPagesOf(
  chains: readonly DecodedChain[],
  captured: (page: number) => boolean,
): number[] {
  const pages = new Set<number>();
  for (const c of chains) {
    for (const d of c.descriptors) {
      if (typeof d.addr !== "number" || d.len === 0) continue;
      const first = Math.floor(d.addr / GUEST_PAGE_SIZE);
      const last = Math.floor((d.addr + d.len - 1) / GUEST_PAGE_SIZE);
      for (let p = first; p <= last && p - first < 64; p++) {
        const gpa = p * GUEST_PAGE_SIZE;
        if (captured(gpa)) pages.add(gpa);
      }
    }
  }
  return [...pages].sort((a, b) => a - b);
}

/**
 * A self-contained guest memory for a seed: its ring areas and indirect tables at their original
 * addresses, and zero-filled pages where the outstanding buffers were (the device only needs
 * them to exist). Every other page is absent. Cold path: allocates a few hundred KiB.
 */
export function seedMemory(seed: SeedRingState): GuestMemory {
  const pages = new Set<number>(seed.bufferPages);
  const cover = (gpa: number, len: number) => {
    for (let p = Math.floor(gpa / GUEST_PAGE_SIZE); p * GUEST_PAGE_SIZE < gpa + len; p++) {
      pages.add(p * GUEST_PAGE_SIZE);
    }
  };
  cover(seed.descAddr, seed.descTable.length);
  cover(seed.driverAddr, seed.driverArea.length);
  cover(seed.deviceAddr, seed.deviceArea.length);
  for (const t of seed.indirectTables) cover(Number(t.addr), t.bytes.length);
  const sorted = [...pages].sort((a, b) => a - b);
  const m = new GuestMemory();
  for (let k = 0; k < sorted.length;) {
    let end = k + 1;
    while (end < sorted.length && sorted[end] === sorted[end - 1] + GUEST_PAGE_SIZE) end++;
    m.addRegion({ gpa: sorted[k], size: (end - k) * GUEST_PAGE_SIZE });
    k = end;
  }
  placeSeedRing(seed, m, {
    descGpa: seed.descAddr,
    driverGpa: seed.driverAddr,
    deviceGpa: seed.deviceAddr,
  });
  for (const t of seed.indirectTables) m.write(Number(t.addr), t.bytes);
  return m;
}

/** The queue description of a seed at its original addresses, for {@link inspectQueue}. */
export function seedQueueSpec(seed: SeedRingState): QueueSpec {
  const [, device = "seed", queue = "0"] = seed.name.split("/");
  return {
    device,
    path: seed.name,
    queue: Number(queue),
    size: seed.size,
    layout: seed.layout,
    descAddr: seed.descAddr,
    driverAddr: seed.driverAddr,
    deviceAddr: seed.deviceAddr,
    features: seed.features,
  };
}
