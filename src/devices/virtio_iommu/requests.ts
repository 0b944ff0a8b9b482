/**
 * The requestq codec (spec §5.13.6 "Device operations"; DMA_MODES.md §4.3): every request is a
 * device-readable part (`struct virtio_iommu_req_head` + fields) followed by a device-writable
 * tail (`struct virtio_iommu_req_tail`, plus the properties area for PROBE). All fields are
 * little-endian.
 *
 * | type | readable layout (byte offsets) | readable | writable |
 * |---|---|---|---|
 * | ATTACH 1 | 0 head, 4 domain, 8 endpoint, 12 flags, 16 reserved[4] | 20 | 4 |
 * | DETACH 2 | 0 head, 4 domain, 8 endpoint, 12 reserved[8] | 20 | 4 |
 * | MAP 3 | 0 head, 4 domain, 8 virt_start, 16 virt_end, 24 phys_start, 32 flags | 36 | 4 |
 * | UNMAP 4 | 0 head, 4 domain, 8 virt_start, 16 virt_end, 24 reserved[4] | 28 | 4 |
 * | PROBE 5 | 0 head, 4 endpoint, 8 reserved[64] | 72 | probe_size + 4 |
 *
 * Encoders are for the driver side; {@link decodeViommuRequest} is the device's parser.
 *
 * @module
 */

import { type U64, u64FromParts, u64Hi, u64Lo } from "../../memory/u64.ts";
import {
  VIRTIO_IOMMU_ATTACH_SIZE,
  VIRTIO_IOMMU_DETACH_SIZE,
  VIRTIO_IOMMU_MAP_SIZE,
  VIRTIO_IOMMU_PROBE_SIZE,
  VIRTIO_IOMMU_REQ_HEAD_SIZE,
  VIRTIO_IOMMU_REQ_TAIL_SIZE,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
  VIRTIO_IOMMU_UNMAP_SIZE,
} from "./constants.ts";

/** ATTACH (spec §5.13.6.3): attach `endpoint` to `domain`, creating the domain if needed. */
export interface ViommuAttach {
  /** Request type 1. */
  readonly type: typeof VIRTIO_IOMMU_T_ATTACH;
  /** Domain ID (u32). */
  readonly domain: number;
  /** Endpoint ID (u32). */
  readonly endpoint: number;
  /** `VIRTIO_IOMMU_ATTACH_F_*` bits (u32). */
  readonly flags: number;
}
/** DETACH (spec §5.13.6.4): detach `endpoint` from `domain`. */
export interface ViommuDetach {
  /** Request type 2. */
  readonly type: typeof VIRTIO_IOMMU_T_DETACH;
  /** Domain ID (u32). */
  readonly domain: number;
  /** Endpoint ID (u32). */
  readonly endpoint: number;
}
/** MAP (spec §5.13.6.5): map the inclusive IOVA range to `physStart` in `domain`. */
export interface ViommuMap {
  /** Request type 3. */
  readonly type: typeof VIRTIO_IOMMU_T_MAP;
  /** Domain ID (u32). */
  readonly domain: number;
  /** First IOVA (exact u64). */
  readonly virtStart: U64;
  /** Last IOVA, inclusive (exact u64). */
  readonly virtEnd: U64;
  /** Guest-physical address of `virtStart` (exact u64). */
  readonly physStart: U64;
  /** `VIRTIO_IOMMU_MAP_F_*` bits (u32). */
  readonly flags: number;
}
/** UNMAP (spec §5.13.6.6): remove every mapping inside the inclusive IOVA range. */
export interface ViommuUnmap {
  /** Request type 4. */
  readonly type: typeof VIRTIO_IOMMU_T_UNMAP;
  /** Domain ID (u32). */
  readonly domain: number;
  /** First IOVA (exact u64). */
  readonly virtStart: U64;
  /** Last IOVA, inclusive (exact u64). */
  readonly virtEnd: U64;
}
/** PROBE (spec §5.13.6.7): ask for the endpoint's properties. */
export interface ViommuProbe {
  /** Request type 5. */
  readonly type: typeof VIRTIO_IOMMU_T_PROBE;
  /** Endpoint ID (u32). */
  readonly endpoint: number;
}

/** Any well-formed request. */
export type ViommuRequest = ViommuAttach | ViommuDetach | ViommuMap | ViommuUnmap | ViommuProbe;

/**
 * The device's verdict on a request's readable bytes.
 * - `ok`: `request` is valid to execute; `reservedNonZero` is true when a reserved field that the
 *   device may reject is set: ATTACH `reserved` (the device MUST answer INVAL, spec §5.13.6.3.2) and
 *   UNMAP `reserved` (the device MAY answer INVAL, §5.13.6.6.2). The head's, DETACH's and PROBE's
 *   reserved fields are ignored as the spec requires (§5.13.6.2, §5.13.6.4.2, §5.13.6.7.2: MUST ignore).
 * - `unknown-type`: the head's type is not 1..5 (spec §5.13.6.1: SHOULD NOT write, used len 0).
 * - `short-head`: fewer than 4 readable bytes: the type cannot be read (used len 0).
 * - `bad-size`: the readable part is not the size the type requires (QEMU: DEVERR).
 */
export type ViommuDecodeResult =
  | { readonly kind: "ok"; readonly request: ViommuRequest; readonly reservedNonZero: boolean }
  | { readonly kind: "unknown-type"; readonly type: number }
  | { readonly kind: "short-head" }
  | { readonly kind: "bad-size"; readonly type: number; readonly expected: number };

/**
 * Device-readable size in bytes of a request of `type` (spec §5.13.6), or 0 for an unknown type.
 */
export function viommuRequestSize(type: number): number {
  switch (type) {
    case VIRTIO_IOMMU_T_ATTACH:
      return VIRTIO_IOMMU_ATTACH_SIZE;
    case VIRTIO_IOMMU_T_DETACH:
      return VIRTIO_IOMMU_DETACH_SIZE;
    case VIRTIO_IOMMU_T_MAP:
      return VIRTIO_IOMMU_MAP_SIZE;
    case VIRTIO_IOMMU_T_UNMAP:
      return VIRTIO_IOMMU_UNMAP_SIZE;
    case VIRTIO_IOMMU_T_PROBE:
      return VIRTIO_IOMMU_PROBE_SIZE;
    default:
      return 0;
  }
}

/**
 * Device-writable size in bytes of a request of `type`: the 4-byte tail, plus `probeSize`
 * bytes of properties for PROBE (spec §5.13.6.7).
 */
export function viommuTailSize(type: number, probeSize: number): number {
  return type === VIRTIO_IOMMU_T_PROBE
    ? probeSize + VIRTIO_IOMMU_REQ_TAIL_SIZE
    : VIRTIO_IOMMU_REQ_TAIL_SIZE;
}

function put64(v: DataView, off: number, x: U64): void {
  v.setUint32(off, u64Lo(x), true);
  v.setUint32(off + 4, u64Hi(x), true);
}
function get64(v: DataView, off: number): U64 {
  return u64FromParts(v.getUint32(off, true), v.getUint32(off + 4, true));
}
function allZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Encodes the device-readable part of a request (driver side). Reserved bytes are zero.
 * @returns a new array of {@link viommuRequestSize} bytes.
 */
export function encodeViommuRequest(req: ViommuRequest): Uint8Array {
  const out = new Uint8Array(viommuRequestSize(req.type));
  const v = new DataView(out.buffer);
  out[0] = req.type;
  switch (req.type) {
    case VIRTIO_IOMMU_T_ATTACH:
      v.setUint32(4, req.domain >>> 0, true);
      v.setUint32(8, req.endpoint >>> 0, true);
      v.setUint32(12, req.flags >>> 0, true);
      break;
    case VIRTIO_IOMMU_T_DETACH:
      v.setUint32(4, req.domain >>> 0, true);
      v.setUint32(8, req.endpoint >>> 0, true);
      break;
    case VIRTIO_IOMMU_T_MAP:
      v.setUint32(4, req.domain >>> 0, true);
      put64(v, 8, req.virtStart);
      put64(v, 16, req.virtEnd);
      put64(v, 24, req.physStart);
      v.setUint32(32, req.flags >>> 0, true);
      break;
    case VIRTIO_IOMMU_T_UNMAP:
      v.setUint32(4, req.domain >>> 0, true);
      put64(v, 8, req.virtStart);
      put64(v, 16, req.virtEnd);
      break;
    case VIRTIO_IOMMU_T_PROBE:
      v.setUint32(4, req.endpoint >>> 0, true);
      break;
  }
  return out;
}

/**
 * Parses a request's device-readable bytes (device side). Never throws; hostile bytes produce a
 * non-`ok` result or `reservedNonZero`.
 * @param bytes the readable part, exactly as long as the driver made it (`readableBytes`).
 */
export function decodeViommuRequest(bytes: Uint8Array): ViommuDecodeResult {
  if (bytes.length < VIRTIO_IOMMU_REQ_HEAD_SIZE) return { kind: "short-head" };
  const type = bytes[0];
  const expected = viommuRequestSize(type);
  if (expected === 0) return { kind: "unknown-type", type };
  if (bytes.length !== expected) return { kind: "bad-size", type, expected };
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let request: ViommuRequest;
  let bodyReserved = false;
  switch (type) {
    case VIRTIO_IOMMU_T_ATTACH:
      request = {
        type,
        domain: v.getUint32(4, true),
        endpoint: v.getUint32(8, true),
        flags: v.getUint32(12, true),
      };
      bodyReserved = !allZero(bytes, 16, 20);
      break;
    case VIRTIO_IOMMU_T_DETACH:
      request = { type, domain: v.getUint32(4, true), endpoint: v.getUint32(8, true) };
      break;
    case VIRTIO_IOMMU_T_MAP:
      request = {
        type,
        domain: v.getUint32(4, true),
        virtStart: get64(v, 8),
        virtEnd: get64(v, 16),
        physStart: get64(v, 24),
        flags: v.getUint32(32, true),
      };
      break;
    case VIRTIO_IOMMU_T_UNMAP:
      request = {
        type,
        domain: v.getUint32(4, true),
        virtStart: get64(v, 8),
        virtEnd: get64(v, 16),
      };
      bodyReserved = !allZero(bytes, 24, 28);
      break;
    default: // VIRTIO_IOMMU_T_PROBE (viommuRequestSize accepted only 1..5)
      request = { type: VIRTIO_IOMMU_T_PROBE, endpoint: v.getUint32(4, true) };
      break;
  }
  return { kind: "ok", request, reservedNonZero: bodyReserved };
}
