/**
 * PROBE properties (spec §5.13.6.8 "PROBE properties"): a list of TLVs written into the
 * device-writable properties area of a PROBE request. Each property is
 * `{ le16 type (bits 0..11) + reserved (bits 12..15); le16 length; u8 value[length] }` and the next
 * one starts `4 + length` bytes later. The list ends at type 0 (NONE) or at the end of the area.
 *
 * RESV_MEM (type 1, 24 bytes, `length = 20`):
 * `head(4) · subtype u8 @4 · reserved[3] @5 · start le64 @8 · end le64 @16` (end inclusive).
 *
 * @module
 */

import { type U64, u64FromParts, u64Hi, u64Lo } from "../../memory/u64.ts";
import {
  VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE,
  VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE,
  VIRTIO_IOMMU_PROBE_T_MASK,
  VIRTIO_IOMMU_PROBE_T_NONE,
  VIRTIO_IOMMU_PROBE_T_RESV_MEM,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
} from "./constants.ts";

/** A reserved memory region of an endpoint (RESV_MEM property). */
export interface ViommuResvMem {
  /** `VIRTIO_IOMMU_RESV_MEM_T_RESERVED` (0) or `VIRTIO_IOMMU_RESV_MEM_T_MSI` (1). */
  readonly subtype: number;
  /** First IOVA of the region (exact u64). */
  readonly start: U64;
  /** Last IOVA of the region, inclusive (exact u64). */
  readonly end: U64;
}

/**
 * Writes RESV_MEM properties into `area` (the PROBE properties area), then zero-fills the rest.
 * @returns `true` when all properties fit, `false` (and `area` all zero) when they do not (the
 * device then answers INVAL, spec §5.13.6.7.2).
 */
export function encodeProbeProperties(
  regions: readonly ViommuResvMem[],
  area: Uint8Array,
): boolean {
  area.fill(0);
  if (regions.length * VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE > area.length) return false;
  const v = new DataView(area.buffer, area.byteOffset, area.length);
  let off = 0;
  for (const r of regions) {
    v.setUint16(off, VIRTIO_IOMMU_PROBE_T_RESV_MEM, true);
    v.setUint16(
      off + 2,
      VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE - VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE,
      true,
    );
    v.setUint8(off + 4, r.subtype);
    v.setUint32(off + 8, u64Lo(r.start), true);
    v.setUint32(off + 12, u64Hi(r.start), true);
    v.setUint32(off + 16, u64Lo(r.end), true);
    v.setUint32(off + 20, u64Hi(r.end), true);
    off += VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE;
  }
  return true;
}

/**
 * Parses a PROBE properties area (driver side), as the spec's driver requirements say: stop at
 * type NONE or the end; ignore a property whose reserved type bits are set (MUST); ignore
 * unknown types (SHOULD); treat an unknown RESV_MEM subtype as RESERVED (SHOULD). A property
 * whose `length` runs past the area ends parsing.
 * @returns the reserved regions found, in order.
 */
export function parseProbeProperties(area: Uint8Array): ViommuResvMem[] {
  const v = new DataView(area.buffer, area.byteOffset, area.length);
  const out: ViommuResvMem[] = [];
  let off = 0;
  while (off + VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE <= area.length) {
    const word = v.getUint16(off, true);
    const len = v.getUint16(off + 2, true);
    const type = word & VIRTIO_IOMMU_PROBE_T_MASK;
    if (type === VIRTIO_IOMMU_PROBE_T_NONE && (word & ~VIRTIO_IOMMU_PROBE_T_MASK) === 0) break;
    const end = off + VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE + len;
    if (end > area.length) break;
    const reserved = (word & ~VIRTIO_IOMMU_PROBE_T_MASK) !== 0;
    if (
      !reserved && type === VIRTIO_IOMMU_PROBE_T_RESV_MEM &&
      len >= VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE - VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE
    ) {
      const sub = v.getUint8(off + 4);
      out.push({
        subtype: sub === VIRTIO_IOMMU_RESV_MEM_T_MSI
          ? VIRTIO_IOMMU_RESV_MEM_T_MSI
          : VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
        start: u64FromParts(v.getUint32(off + 8, true), v.getUint32(off + 12, true)),
        end: u64FromParts(v.getUint32(off + 16, true), v.getUint32(off + 20, true)),
      });
    }
    off = end;
  }
  return out;
}
