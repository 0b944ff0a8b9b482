/**
 * `struct virtio_iommu_config` (spec §5.13.4 "Device configuration layout"; DMA_MODES.md §4.2):
 * 40 bytes, little-endian, packed.
 *
 * | off | size | field |
 * |---|---|---|
 * | 0x00 | 8 | page_size_mask |
 * | 0x08 | 8 | input_range.start |
 * | 0x10 | 8 | input_range.end (inclusive) |
 * | 0x18 | 4 | domain_range.start |
 * | 0x1C | 4 | domain_range.end (inclusive) |
 * | 0x20 | 4 | probe_size |
 * | 0x24 | 1 | bypass |
 * | 0x25 | 3 | reserved |
 *
 * @module
 */

import { type U64, U64_MAX, u64FromParts, u64Hi, u64Lo } from "../../memory/u64.ts";
import { VIRTIO_IOMMU_CONFIG_SIZE } from "./constants.ts";

/** Byte offset of `page_size_mask`. */
export const VIRTIO_IOMMU_CONFIG_PAGE_SIZE_MASK = 0x00;
/** Byte offset of `input_range.start`. */
export const VIRTIO_IOMMU_CONFIG_INPUT_START = 0x08;
/** Byte offset of `input_range.end`. */
export const VIRTIO_IOMMU_CONFIG_INPUT_END = 0x10;
/** Byte offset of `domain_range.start`. */
export const VIRTIO_IOMMU_CONFIG_DOMAIN_START = 0x18;
/** Byte offset of `domain_range.end`. */
export const VIRTIO_IOMMU_CONFIG_DOMAIN_END = 0x1c;
/** Byte offset of `probe_size`. */
export const VIRTIO_IOMMU_CONFIG_PROBE_SIZE = 0x20;
/** Byte offset of `bypass` (the only driver-writable field, with BYPASS_CONFIG). */
export const VIRTIO_IOMMU_CONFIG_BYPASS = 0x24;

/** The decoded device configuration. Addresses are exact u64; IDs and sizes are u32. */
export interface VirtioIommuConfig {
  /** Supported page sizes: at least one bit; the lowest set bit is the granule (bytes). */
  pageSizeMask: U64;
  /** First valid IOVA (inclusive). */
  inputStart: U64;
  /** Last valid IOVA (inclusive). */
  inputEnd: U64;
  /** First valid domain ID (inclusive). */
  domainStart: number;
  /** Last valid domain ID (inclusive). */
  domainEnd: number;
  /** Bytes of the properties area the device writes on PROBE. */
  probeSize: number;
  /** 1 when unattached endpoints bypass the IOMMU (identity), else 0. */
  bypass: number;
}

/** The defaults QEMU uses (4 KiB granule, full 64-bit input range, any domain, 512, bypass 1). */
export function defaultViommuConfig(): VirtioIommuConfig {
  return {
    pageSizeMask: u64FromParts(0xffff_f000, 0xffff_ffff),
    inputStart: 0,
    inputEnd: U64_MAX,
    domainStart: 0,
    domainEnd: 0xffff_ffff,
    probeSize: 512,
    bypass: 1,
  };
}

/**
 * Encodes the config into its 40-byte little-endian layout.
 * @param cfg configuration to encode.
 * @param out optional destination of at least 40 bytes (written at offset 0).
 * @returns `out` (or a new 40-byte array); reserved bytes are 0.
 */
export function encodeViommuConfig(
  cfg: VirtioIommuConfig,
  out: Uint8Array = new Uint8Array(VIRTIO_IOMMU_CONFIG_SIZE),
): Uint8Array {
  const v = new DataView(out.buffer, out.byteOffset, VIRTIO_IOMMU_CONFIG_SIZE);
  const put64 = (off: number, x: U64) => {
    v.setUint32(off, u64Lo(x), true);
    v.setUint32(off + 4, u64Hi(x), true);
  };
  put64(VIRTIO_IOMMU_CONFIG_PAGE_SIZE_MASK, cfg.pageSizeMask);
  put64(VIRTIO_IOMMU_CONFIG_INPUT_START, cfg.inputStart);
  put64(VIRTIO_IOMMU_CONFIG_INPUT_END, cfg.inputEnd);
  v.setUint32(VIRTIO_IOMMU_CONFIG_DOMAIN_START, cfg.domainStart >>> 0, true);
  v.setUint32(VIRTIO_IOMMU_CONFIG_DOMAIN_END, cfg.domainEnd >>> 0, true);
  v.setUint32(VIRTIO_IOMMU_CONFIG_PROBE_SIZE, cfg.probeSize >>> 0, true);
  v.setUint8(VIRTIO_IOMMU_CONFIG_BYPASS, cfg.bypass & 0xff);
  v.setUint8(0x25, 0);
  v.setUint16(0x26, 0, true);
  return out;
}

/**
 * Decodes a 40-byte config (as a driver reads it).
 * @throws RangeError when `bytes` is shorter than 40.
 */
export function decodeViommuConfig(bytes: Uint8Array): VirtioIommuConfig {
  if (bytes.length < VIRTIO_IOMMU_CONFIG_SIZE) {
    throw new RangeError(`virtio-iommu config needs 40 bytes, got ${bytes.length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, VIRTIO_IOMMU_CONFIG_SIZE);
  const get64 = (off: number) => u64FromParts(v.getUint32(off, true), v.getUint32(off + 4, true));
  return {
    pageSizeMask: get64(VIRTIO_IOMMU_CONFIG_PAGE_SIZE_MASK),
    inputStart: get64(VIRTIO_IOMMU_CONFIG_INPUT_START),
    inputEnd: get64(VIRTIO_IOMMU_CONFIG_INPUT_END),
    domainStart: v.getUint32(VIRTIO_IOMMU_CONFIG_DOMAIN_START, true),
    domainEnd: v.getUint32(VIRTIO_IOMMU_CONFIG_DOMAIN_END, true),
    probeSize: v.getUint32(VIRTIO_IOMMU_CONFIG_PROBE_SIZE, true),
    bypass: v.getUint8(VIRTIO_IOMMU_CONFIG_BYPASS),
  };
}

/**
 * The granule (smallest page size) of a `page_size_mask`: its lowest set bit, in bytes.
 * Returns a number up to 2^52, or a bigint above (a granule that large makes every mapping fail).
 * @throws RangeError when the mask is 0 (spec: the device MUST set at least one bit).
 */
export function viommuGranule(pageSizeMask: U64): U64 {
  const m = BigInt(pageSizeMask);
  if (m === 0n) throw new RangeError("page_size_mask is 0: the device must set at least one bit");
  const g = m & -m;
  return g <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(g) : g;
}
