/**
 * Real-ring fixtures: a captured guest's kept 4 KiB pages plus an index of its virtqueues
 * (`virtio-ring-fixture-v1`, see the fixtures README), turned into a
 * {@link GuestMemory} in which **only kept pages exist**: any access to a page that was not kept
 * raises {@link MemoryFault} (absent is not zero).
 *
 * This module takes bytes and parsed JSON, never file names to open: file reading belongs to the
 * CLI (`tools/inspect.ts`) and the tests.
 *
 * @module
 */

import { FixtureIndexSchema } from "./schemas.ts";
import { GUEST_PAGE_SIZE, GuestMemory } from "../memory/guest_memory.ts";
import type { U64 } from "../memory/u64.ts";
import type { RingLayout } from "../virtio/queue.ts";
import { featuresFromQemuReport, type QemuFeatureReport } from "./feature_names.ts";
import { InspectInputError } from "./inspect_error.ts";
import type { QemuQueueStatus } from "./qemu_oracle.ts";
import { parseBdf } from "./vtd_walk.ts";

/** One queue of a fixture index, as written by the capture tool. */
export interface FixtureIndexQueue {
  /** Device name, e.g. `"virtio-blk"`. */
  device: string;
  /** QOM path of the device backend. */
  path: string;
  /** Queue index. */
  queue: number;
  /** Queue Size. */
  size: number;
  /** Descriptor area address. */
  desc: U64;
  /** Driver area address (split: available ring). */
  avail: U64;
  /** Device area address (split: used ring). */
  used: U64;
  /** Packed layout. */
  packed: boolean;
  /** Addresses are IOVAs (an IOMMU translated them): `bdf` and the top-level `iommu` say how. */
  addresses_are_iova?: boolean;
  /** PCI address of the device function, `"BB:DD.F"` (its VT-d requester id). */
  bdf?: string;
  /** Indirect tables the capture followed. */
  indirect_tables_referenced?: number;
  /** Buffers the capture kept pages for. */
  buffers_referenced?: number;
  /** Negotiated features as QEMU reports them. */
  guest_features: QemuFeatureReport;
  /** QEMU's queue status at capture time. */
  qemu_status?: QemuQueueStatus;
}

/** A fixture index (`*.index.json`, format `virtio-ring-fixture-v1`). */
export interface FixtureIndex {
  /** Format tag. */
  format: "virtio-ring-fixture-v1";
  /** Page size, 4096. */
  page_size: 4096;
  /** Guest RAM size in bytes. */
  ram_size: number;
  /** Free text. */
  note?: string;
  /** Kept pages: GPA, offset in the pages image, and why each was kept. */
  pages: { gpa: number; file_offset: number; why: string[] }[];
  /** The queues. */
  queues: FixtureIndexQueue[];
  /**
   * The guest's Intel vIOMMU, when queues have `addresses_are_iova`: the Root Table Address
   * register value (hex string) and optionally the capture tool's own translations, per `bdf`,
   * IOVA (hex) -> GPA (hex), which the inspector only cross-checks against its walk.
   */
  iommu?: { rtaddr_reg: string; iova_to_gpa?: Record<string, Record<string, string>> };
}

/** One queue of a fixture, in the engine's terms. */
export interface FixtureQueue {
  /** Device name as QEMU names it, e.g. `"virtio-net"`. */
  device: string;
  /** QOM path of the device backend (the oracle's key). */
  path: string;
  /** Queue index within the device. */
  queue: number;
  /** Queue Size in descriptors. */
  size: number;
  /** Ring layout. */
  layout: RingLayout;
  /** Descriptor area address (table / ring). */
  descAddr: U64;
  /** Driver area address (split: available ring; packed: driver event suppression). */
  driverAddr: U64;
  /** Device area address (split: used ring; packed: device event suppression). */
  deviceAddr: U64;
  /** True when the addresses are IOVAs (an IOMMU was in use), false for GPAs. */
  addressesAreIova: boolean;
  /** PCI address `"BB:DD.F"`, when the index gives one. */
  bdf?: string;
  /** VT-d requester id (`bus << 8 | devfn`) from `bdf`. */
  sourceId?: number;
  /** Negotiated (guest) features as a 64-bit mask. */
  features: bigint;
  /** Feature names the index listed but this tool cannot map to bits (reported, not fatal). */
  unknownFeatureNames: string[];
  /** QEMU's private queue state at capture time, when the index has it. */
  qemuStatus?: QemuQueueStatus;
}

/** A loaded fixture: the index, guest memory of the kept pages, and the queues. */
export interface Fixture {
  /** Validated index. */
  index: FixtureIndex;
  /** Guest memory made of the kept pages only (one region per run of contiguous pages). */
  memory: GuestMemory;
  /** The queues, in index order. */
  queues: FixtureQueue[];
  /** Guest RAM size in bytes (addresses at or above it are outside RAM). */
  ramSize: number;
  /** Sorted GPAs of the kept pages. */
  keptPages: number[];
  /**
   * GPAs of pages the index lists that the pages image does not hold (a truncated image): they
   * are absent from `memory`; queues whose rings lie there report `PAGE_TRUNCATED`.
   */
  truncatedPages: number[];
  /** Why the image is short (gzip stream cut, fewer bytes than the index needs), or `null`. */
  imageProblem: string | null;
  /** The vIOMMU (RTADDR as a number), when the index has `iommu`. */
  iommu?: {
    rtaddr: bigint;
    /** Capture tool's translations by bdf, IOVA -> GPA (cross-check only). */
    iovaToGpa: Map<string, Map<bigint, bigint>>;
  };
}

/**
 * Validates a parsed fixture index (parse it with {@link parseExactJson}).
 * @param json parsed index file.
 * @param file file name for errors.
 * @throws InspectInputError naming the first invalid field and the fix.
 */
export function parseFixtureIndex(json: unknown, file: string): FixtureIndex {
  const r = FixtureIndexSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InspectInputError(
      file,
      issue.path.map(String).join("."),
      issue.message,
      "pass a virtio-ring-fixture-v1 index (*.index.json) as written by the capture tool",
    );
  }
  return r.data;
}

/**
 * Decompresses a gzip stream (the `*.pages.bin.gz` image) with the web-standard
 * `DecompressionStream("gzip")`.
 * @param gz the compressed bytes.
 * @returns the decompressed bytes.
 * @throws TypeError when the data is not valid gzip.
 */
export async function gunzip(gz: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([gz as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Builds guest memory from the kept pages: one region per run of GPA-contiguous pages, each a
 * copy of the pages' bytes. Pages that were not kept are holes (accesses raise `MemoryFault`).
 * @param index validated index.
 * @param pages the decompressed pages image.
 * @param file pages file name for errors.
 * A page whose `file_offset` lies beyond the image (a truncated image) is left out and listed in
 * `truncatedPages`.
 * @throws InspectInputError when a GPA is listed twice.
 */
export function buildFixtureMemory(
  index: FixtureIndex,
  pages: Uint8Array,
  file: string,
): { memory: GuestMemory; keptPages: number[]; truncatedPages: number[] } {
  const all = index.pages.map((p, i) => ({ ...p, i })).sort((a, b) => a.gpa - b.gpa);
  const truncatedPages: number[] = [];
  const order = all.filter((p) => {
    if (p.file_offset + GUEST_PAGE_SIZE <= pages.length) return true;
    truncatedPages.push(p.gpa);
    return false;
  });
  for (let k = 0; k < all.length; k++) {
    const p = all[k];
    if (k > 0 && all[k - 1].gpa === p.gpa) {
      throw new InspectInputError(
        file,
        `pages[${p.i}].gpa`,
        `GPA 0x${p.gpa.toString(16)} is listed twice`,
        "list each kept page once",
      );
    }
  }
  const memory = new GuestMemory();
  let k = 0;
  while (k < order.length) {
    let end = k + 1;
    while (end < order.length && order[end].gpa === order[end - 1].gpa + GUEST_PAGE_SIZE) end++;
    const size = (end - k) * GUEST_PAGE_SIZE;
    const backing = new ArrayBuffer(size);
    const bytes = new Uint8Array(backing);
    for (let j = k; j < end; j++) {
      const off = order[j].file_offset;
      bytes.set(pages.subarray(off, off + GUEST_PAGE_SIZE), (j - k) * GUEST_PAGE_SIZE);
    }
    memory.addRegion({
      gpa: order[k].gpa,
      size,
      backing,
      name: `kept@0x${order[k].gpa.toString(16)}`,
    });
    k = end;
  }
  return { memory, keptPages: order.map((p) => p.gpa), truncatedPages };
}

/** Converts an index queue to the engine's terms (features as a mask, layout name). */
export function fixtureQueue(q: FixtureIndexQueue): FixtureQueue {
  const { mask, unknownNames } = featuresFromQemuReport(q.guest_features);
  return {
    device: q.device,
    path: q.path,
    queue: q.queue,
    size: q.size,
    layout: q.packed ? "packed" : "split",
    descAddr: q.desc,
    driverAddr: q.avail,
    deviceAddr: q.used,
    addressesAreIova: q.addresses_are_iova ?? false,
    bdf: q.bdf,
    sourceId: q.bdf === undefined ? undefined : parseBdf(q.bdf) ?? undefined,
    features: mask,
    unknownFeatureNames: unknownNames,
    qemuStatus: q.qemu_status,
  };
}

/**
 * Loads a fixture from its index (parsed JSON) and its gzip pages image (bytes).
 * @param indexJson parsed `*.index.json` (use {@link parseExactJson}).
 * @param pagesGz bytes of `*.pages.bin.gz`.
 * @param files file names, for error messages.
 * @throws InspectInputError on an invalid index or image.
 */
export async function loadFixture(
  indexJson: unknown,
  pagesGz: Uint8Array,
  files: { index: string; pages: string },
): Promise<Fixture> {
  const index = parseFixtureIndex(indexJson, files.index);
  const iommu = checkIommuFields(index, files.index);
  const { bytes: pages, error } = await gunzipPartial(pagesGz);
  if (error !== null && pages.length === 0) {
    throw new InspectInputError(
      files.pages,
      "",
      `not a valid gzip image (${error})`,
      "pass the *.pages.bin.gz written with the index, not a decompressed or truncated copy",
    );
  }
  const { memory, keptPages, truncatedPages } = buildFixtureMemory(index, pages, files.index);
  let imageProblem: string | null = null;
  if (error !== null || truncatedPages.length > 0) {
    imageProblem = `${files.pages}: ` +
      (error !== null ? `gzip stream ends early (${error}) after ${pages.length} bytes; ` : "") +
      `${truncatedPages.length} of ${index.pages.length} listed pages are not in the image`;
  }
  return {
    index,
    memory,
    queues: index.queues.map(fixtureQueue),
    ramSize: index.ram_size,
    keptPages,
    truncatedPages,
    imageProblem,
    iommu,
  };
}

/**
 * Checks the IOMMU fields across the index: every `addresses_are_iova` queue has a parseable
 * `bdf`, and the index then has `iommu`.
 * @throws InspectInputError naming the field and the fix.
 */
function checkIommuFields(index: FixtureIndex, file: string): Fixture["iommu"] {
  index.queues.forEach((q, i) => {
    if (q.bdf !== undefined && parseBdf(q.bdf) === null) {
      throw new InspectInputError(
        file,
        `queues.${i}.bdf`,
        `"${q.bdf}" is not a PCI address`,
        'write the device\'s PCI address as "BB:DD.F" (hex bus and device), e.g. "00:03.0"',
      );
    }
    if (q.addresses_are_iova && q.bdf === undefined) {
      throw new InspectInputError(
        file,
        `queues.${i}.bdf`,
        "missing on a queue with addresses_are_iova",
        'add the device\'s PCI address, e.g. "bdf": "00:03.0" (its VT-d requester id)',
      );
    }
    if (q.addresses_are_iova && index.iommu === undefined) {
      throw new InspectInputError(
        file,
        "iommu",
        `missing, but queues.${i} has addresses_are_iova`,
        'add "iommu": {"rtaddr_reg": "0x..."} (the VT-d Root Table Address register) and the ' +
          "pages of the root, context and page tables",
      );
    }
  });
  if (index.iommu === undefined) return undefined;
  const iovaToGpa = new Map<string, Map<bigint, bigint>>();
  for (const [bdf, m] of Object.entries(index.iommu.iova_to_gpa ?? {})) {
    iovaToGpa.set(
      bdf,
      new Map(Object.entries(m).map(([iova, gpa]) => [BigInt(iova), BigInt(gpa)])),
    );
  }
  return { rtaddr: BigInt(index.iommu.rtaddr_reg), iovaToGpa };
}

/**
 * Decompresses as much of a gzip stream as it can: a stream cut short (a truncated file) yields
 * the bytes before the cut and the error.
 * @param gz the compressed bytes.
 * @returns the decompressed bytes and `null`, or the bytes decoded before the failure and why.
 */
export async function gunzipPartial(
  gz: Uint8Array,
): Promise<{ bytes: Uint8Array; error: string | null }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let error: string | null = null;
  const reader = new Blob([gz as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("gzip"),
  ).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
    }
  } catch (e) {
    error = (e as Error).message;
  }
  const bytes = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.length;
  }
  return { bytes, error };
}
