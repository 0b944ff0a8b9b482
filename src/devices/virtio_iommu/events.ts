/**
 * Fault reports on the eventq (spec §5.13.6.9 "Fault reporting"; DMA_MODES.md §4.3):
 * `struct virtio_iommu_fault`, 24 bytes, little-endian.
 *
 * | off | size | field |
 * |---|---|---|
 * | 0 | 1 | reason (UNKNOWN 0, DOMAIN 1, MAPPING 2) |
 * | 1 | 3 | reserved |
 * | 4 | 4 | flags (READ 1<<0, WRITE 1<<1, ADDRESS 1<<8) |
 * | 8 | 4 | endpoint |
 * | 12 | 4 | reserved1 |
 * | 16 | 8 | address (valid iff ADDRESS) |
 *
 * @module
 */

import { type U64, u64FromParts, u64Hi, u64Lo } from "../../memory/u64.ts";
import {
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_FAULT_R_UNKNOWN,
  VIRTIO_IOMMU_FAULT_SIZE,
} from "./constants.ts";

/** A decoded fault report. */
export interface ViommuFaultReport {
  /** `VIRTIO_IOMMU_FAULT_R_*`. */
  readonly reason: number;
  /** `VIRTIO_IOMMU_FAULT_F_*` bits. */
  readonly flags: number;
  /** Endpoint ID that faulted. */
  readonly endpoint: number;
  /** Faulting IOVA (meaningful only with `VIRTIO_IOMMU_FAULT_F_ADDRESS`). */
  readonly address: U64;
}

/**
 * Encodes a fault report into `out` (at least 24 bytes; written at offset 0, reserved bytes 0).
 * @returns `out`.
 * @throws RangeError when `out` is shorter than 24 bytes.
 */
export function encodeViommuFault(
  report: ViommuFaultReport,
  out: Uint8Array = new Uint8Array(VIRTIO_IOMMU_FAULT_SIZE),
): Uint8Array {
  if (out.length < VIRTIO_IOMMU_FAULT_SIZE) {
    throw new RangeError(`a fault report needs 24 bytes, got ${out.length}`);
  }
  const v = new DataView(out.buffer, out.byteOffset, VIRTIO_IOMMU_FAULT_SIZE);
  v.setUint32(0, report.reason & 0xff, true);
  v.setUint32(4, report.flags >>> 0, true);
  v.setUint32(8, report.endpoint >>> 0, true);
  v.setUint32(12, 0, true);
  v.setUint32(16, u64Lo(report.address), true);
  v.setUint32(20, u64Hi(report.address), true);
  return out;
}

/**
 * Decodes a fault report as the spec's driver requirements say (§5.13.6.9.1): a report whose
 * `reserved` bytes are non-zero is ignored; `reserved1` and undefined flag bits are ignored; an
 * unknown reason is treated as UNKNOWN.
 * @returns the report, or `null` when it must be ignored (also when shorter than 24 bytes).
 */
export function decodeViommuFault(bytes: Uint8Array): ViommuFaultReport | null {
  if (bytes.length < VIRTIO_IOMMU_FAULT_SIZE) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, VIRTIO_IOMMU_FAULT_SIZE);
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return null;
  const reason = bytes[0];
  return {
    reason: reason <= VIRTIO_IOMMU_FAULT_R_MAPPING ? reason : VIRTIO_IOMMU_FAULT_R_UNKNOWN,
    flags: v.getUint32(4, true) &
      (VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS),
    endpoint: v.getUint32(8, true),
    address: u64FromParts(v.getUint32(16, true), v.getUint32(20, true)),
  };
}
