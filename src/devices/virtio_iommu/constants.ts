/**
 * virtio-iommu constants with the spec's names (virtio spec v1.2+ §5.13 "IOMMU Device",
 * `device-types/iommu/description.tex`; DMA_MODES.md §4). Feature constants are **bit numbers**
 * (like `VIRTIO_F_*` in `src/virtio/features.ts`); flags and statuses are values.
 *
 * @module
 */

/** Virtio device ID of the IOMMU device (spec §5 "Device Types": 23). */
export const VIRTIO_ID_IOMMU = 23;

/** Requestq is virtqueue 0 (spec §5.13.2 "Virtqueues"). */
export const VIRTIO_IOMMU_REQUESTQ = 0;
/** Eventq is virtqueue 1 (spec §5.13.2 "Virtqueues"). */
export const VIRTIO_IOMMU_EVENTQ = 1;

// --- Feature bits (spec §5.13.3 "Feature bits") --------------------------------------------
/** Bit 0: `input_range` is valid; otherwise the IOVA space is [0, 2^64 - 1]. */
export const VIRTIO_IOMMU_F_INPUT_RANGE = 0;
/** Bit 1: `domain_range` is valid; otherwise any 32-bit domain ID. */
export const VIRTIO_IOMMU_F_DOMAIN_RANGE = 1;
/** Bit 2: MAP and UNMAP requests are available. */
export const VIRTIO_IOMMU_F_MAP_UNMAP = 2;
/** Bit 3 (legacy): unattached endpoints bypass the IOMMU. New devices SHOULD NOT offer it. */
export const VIRTIO_IOMMU_F_BYPASS = 3;
/** Bit 4: the PROBE request is available. */
export const VIRTIO_IOMMU_F_PROBE = 4;
/** Bit 5: the `VIRTIO_IOMMU_MAP_F_MMIO` flag is available. */
export const VIRTIO_IOMMU_F_MMIO = 5;
/** Bit 6: the `bypass` config field and `VIRTIO_IOMMU_ATTACH_F_BYPASS` are available. */
export const VIRTIO_IOMMU_F_BYPASS_CONFIG = 6;

// --- Request types (spec §5.13.6 "Device operations") --------------------------------------
/** ATTACH request type (spec §5.13.6.3). */
export const VIRTIO_IOMMU_T_ATTACH = 1;
/** DETACH request type (spec §5.13.6.4). */
export const VIRTIO_IOMMU_T_DETACH = 2;
/** MAP request type (spec §5.13.6.5). */
export const VIRTIO_IOMMU_T_MAP = 3;
/** UNMAP request type (spec §5.13.6.6). */
export const VIRTIO_IOMMU_T_UNMAP = 4;
/** PROBE request type (spec §5.13.6.7). */
export const VIRTIO_IOMMU_T_PROBE = 5;

// --- Status codes (spec §5.13.6 "Device operations", `struct virtio_iommu_req_tail`) --------
/** Request succeeded. */
export const VIRTIO_IOMMU_S_OK = 0;
/** Virtio communication error. */
export const VIRTIO_IOMMU_S_IOERR = 1;
/** Unsupported request. */
export const VIRTIO_IOMMU_S_UNSUPP = 2;
/** Internal device error. */
export const VIRTIO_IOMMU_S_DEVERR = 3;
/** Invalid parameters. */
export const VIRTIO_IOMMU_S_INVAL = 4;
/** Out-of-range parameters. */
export const VIRTIO_IOMMU_S_RANGE = 5;
/** Entry not found. */
export const VIRTIO_IOMMU_S_NOENT = 6;
/** Bad address. */
export const VIRTIO_IOMMU_S_FAULT = 7;
/** Insufficient resources. */
export const VIRTIO_IOMMU_S_NOMEM = 8;

/** Names of the status codes, indexed by value (for messages). */
export const VIRTIO_IOMMU_STATUS_NAMES: readonly string[] = Object.freeze([
  "OK",
  "IOERR",
  "UNSUPP",
  "DEVERR",
  "INVAL",
  "RANGE",
  "NOENT",
  "FAULT",
  "NOMEM",
]);

/** Name of a status value, e.g. `"INVAL"`, or `"status N"` for an unknown value. */
export function viommuStatusName(status: number): string {
  return VIRTIO_IOMMU_STATUS_NAMES[status] ?? `status ${status}`;
}

// --- Flags -------------------------------------------------------------------------------
/** ATTACH flag: the domain is a bypass (identity) domain (needs BYPASS_CONFIG; spec §5.13.6.3). */
export const VIRTIO_IOMMU_ATTACH_F_BYPASS = 1 << 0;
/** MAP flag: the endpoint may read the range (spec §5.13.6.5). */
export const VIRTIO_IOMMU_MAP_F_READ = 1 << 0;
/** MAP flag: the endpoint may write the range. */
export const VIRTIO_IOMMU_MAP_F_WRITE = 1 << 1;
/** MAP flag: the range is MMIO, not RAM (only valid with `VIRTIO_IOMMU_F_MMIO`). */
export const VIRTIO_IOMMU_MAP_F_MMIO = 1 << 2;
/** All MAP flags the spec defines. */
export const VIRTIO_IOMMU_MAP_F_MASK: number = VIRTIO_IOMMU_MAP_F_READ |
  VIRTIO_IOMMU_MAP_F_WRITE | VIRTIO_IOMMU_MAP_F_MMIO;

// --- Probe properties (spec §5.13.6.8 "PROBE properties") ----------------------------------
/** Probe property type 0: end of the property list. */
export const VIRTIO_IOMMU_PROBE_T_NONE = 0;
/** Probe property type 1: a reserved memory region (`struct virtio_iommu_probe_resv_mem`). */
export const VIRTIO_IOMMU_PROBE_T_RESV_MEM = 1;
/** Mask of the 12-bit property type in the first le16 of a property head. */
export const VIRTIO_IOMMU_PROBE_T_MASK = 0xfff;
/** RESV_MEM subtype: accesses fault; the driver must not map the range. */
export const VIRTIO_IOMMU_RESV_MEM_T_RESERVED = 0;
/** RESV_MEM subtype: the MSI doorbell window, translated by identity. */
export const VIRTIO_IOMMU_RESV_MEM_T_MSI = 1;

// --- Fault reports (spec §5.13.6.9 "Fault reporting") -------------------------------------
/** Fault reason: unknown (e.g. an unknown endpoint). */
export const VIRTIO_IOMMU_FAULT_R_UNKNOWN = 0;
/** Fault reason: the endpoint is attached to no domain and bypass is off. */
export const VIRTIO_IOMMU_FAULT_R_DOMAIN = 1;
/** Fault reason: no mapping, a permission mismatch, or a RESERVED region. */
export const VIRTIO_IOMMU_FAULT_R_MAPPING = 2;
/** Fault flag: the access was a read. */
export const VIRTIO_IOMMU_FAULT_F_READ = 1 << 0;
/** Fault flag: the access was a write. */
export const VIRTIO_IOMMU_FAULT_F_WRITE = 1 << 1;
/** Fault flag: the `address` field is valid. */
export const VIRTIO_IOMMU_FAULT_F_ADDRESS = 1 << 8;

// --- Sizes (spec §5.13.6) ----------------------------------------------------------------
/** `struct virtio_iommu_req_head` bytes (type u8, reserved[3]). */
export const VIRTIO_IOMMU_REQ_HEAD_SIZE = 4;
/** `struct virtio_iommu_req_tail` bytes (status u8, reserved[3]). */
export const VIRTIO_IOMMU_REQ_TAIL_SIZE = 4;
/** Device-readable bytes of an ATTACH request (head, domain, endpoint, flags, reserved[4]). */
export const VIRTIO_IOMMU_ATTACH_SIZE = 20;
/** Device-readable bytes of a DETACH request (head, domain, endpoint, reserved[8]). */
export const VIRTIO_IOMMU_DETACH_SIZE = 20;
/** Device-readable bytes of a MAP request (head, domain, virt_start, virt_end, phys_start, flags). */
export const VIRTIO_IOMMU_MAP_SIZE = 36;
/** Device-readable bytes of an UNMAP request (head, domain, virt_start, virt_end, reserved[4]). */
export const VIRTIO_IOMMU_UNMAP_SIZE = 28;
/** Device-readable bytes of a PROBE request (head, endpoint, reserved[64]). */
export const VIRTIO_IOMMU_PROBE_SIZE = 72;
/** Bytes of a probe property head (`type` le16, `length` le16). */
export const VIRTIO_IOMMU_PROBE_PROPERTY_HEAD_SIZE = 4;
/** Total bytes of a RESV_MEM property (head 4 + `length` 20). */
export const VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE = 24;
/** Bytes of `struct virtio_iommu_fault` (an eventq buffer must hold at least this much). */
export const VIRTIO_IOMMU_FAULT_SIZE = 24;
/** Bytes of `struct virtio_iommu_config`. */
export const VIRTIO_IOMMU_CONFIG_SIZE = 40;
