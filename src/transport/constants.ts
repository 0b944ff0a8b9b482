/**
 * Register layouts of the virtio-pci modern common configuration structure (spec §4.1.4.3) and
 * of the virtio-mmio register block (spec §4.2.2), with the spec's field names.
 *
 * @module
 */

/** MSI-X "no vector" (spec §4.1.5.1.2): the event is not mapped to any vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/**
 * One field of a register block: offset in bytes, natural width in bytes (§4.1.3.1 "the driver
 * MUST access each field using the natural access method"), and whether the driver may write it.
 */
export interface RegisterField {
  /** Spec name, e.g. `"queue_size"`. */
  readonly name: string;
  /** Byte offset in the structure. */
  readonly offset: number;
  /** Natural width in bytes (1, 2, 4 or 8). */
  readonly width: 1 | 2 | 4 | 8;
  /** `"rw"`, read-only `"ro"` or write-only `"wo"` (MMIO). */
  readonly access: "rw" | "ro" | "wo";
}

/** `struct virtio_pci_common_cfg` (spec §4.1.4.3), virtio 1.3 (with queue reset and admin VQ). */
export const VIRTIO_PCI_COMMON_CFG: readonly RegisterField[] = Object.freeze(
  [
    { name: "device_feature_select", offset: 0x00, width: 4, access: "rw" },
    { name: "device_feature", offset: 0x04, width: 4, access: "ro" },
    { name: "driver_feature_select", offset: 0x08, width: 4, access: "rw" },
    { name: "driver_feature", offset: 0x0c, width: 4, access: "rw" },
    { name: "config_msix_vector", offset: 0x10, width: 2, access: "rw" },
    { name: "num_queues", offset: 0x12, width: 2, access: "ro" },
    { name: "device_status", offset: 0x14, width: 1, access: "rw" },
    { name: "config_generation", offset: 0x15, width: 1, access: "ro" },
    { name: "queue_select", offset: 0x16, width: 2, access: "rw" },
    { name: "queue_size", offset: 0x18, width: 2, access: "rw" },
    { name: "queue_msix_vector", offset: 0x1a, width: 2, access: "rw" },
    { name: "queue_enable", offset: 0x1c, width: 2, access: "rw" },
    { name: "queue_notify_off", offset: 0x1e, width: 2, access: "ro" },
    { name: "queue_desc", offset: 0x20, width: 8, access: "rw" },
    { name: "queue_driver", offset: 0x28, width: 8, access: "rw" },
    { name: "queue_device", offset: 0x30, width: 8, access: "rw" },
    { name: "queue_notify_data", offset: 0x38, width: 2, access: "ro" },
    { name: "queue_reset", offset: 0x3a, width: 2, access: "rw" },
    { name: "admin_queue_index", offset: 0x3c, width: 2, access: "ro" },
    { name: "admin_queue_num", offset: 0x3e, width: 2, access: "ro" },
  ] as const,
);

/** Size in bytes of {@link VIRTIO_PCI_COMMON_CFG}. */
export const VIRTIO_PCI_COMMON_CFG_SIZE = 0x40;

/** virtio-mmio `MagicValue`: "virt" in little-endian (spec §4.2.2). */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** virtio-mmio `Version` of a non-legacy device (spec §4.2.2). */
export const VIRTIO_MMIO_VERSION = 2;
/** Offset of the device-specific configuration space in the MMIO block (spec §4.2.2). */
export const VIRTIO_MMIO_CONFIG = 0x100;

/** virtio-mmio registers (spec §4.2.2 table "MMIO Device Register Layout"), all 32-bit. */
export const VIRTIO_MMIO_REGISTERS: readonly RegisterField[] = Object.freeze(
  [
    { name: "MagicValue", offset: 0x000, width: 4, access: "ro" },
    { name: "Version", offset: 0x004, width: 4, access: "ro" },
    { name: "DeviceID", offset: 0x008, width: 4, access: "ro" },
    { name: "VendorID", offset: 0x00c, width: 4, access: "ro" },
    { name: "DeviceFeatures", offset: 0x010, width: 4, access: "ro" },
    { name: "DeviceFeaturesSel", offset: 0x014, width: 4, access: "wo" },
    { name: "DriverFeatures", offset: 0x020, width: 4, access: "wo" },
    { name: "DriverFeaturesSel", offset: 0x024, width: 4, access: "wo" },
    { name: "QueueSel", offset: 0x030, width: 4, access: "wo" },
    { name: "QueueNumMax", offset: 0x034, width: 4, access: "ro" },
    { name: "QueueNum", offset: 0x038, width: 4, access: "wo" },
    { name: "QueueReady", offset: 0x044, width: 4, access: "rw" },
    { name: "QueueNotify", offset: 0x050, width: 4, access: "wo" },
    { name: "InterruptStatus", offset: 0x060, width: 4, access: "ro" },
    { name: "InterruptACK", offset: 0x064, width: 4, access: "wo" },
    { name: "Status", offset: 0x070, width: 4, access: "rw" },
    { name: "QueueDescLow", offset: 0x080, width: 4, access: "wo" },
    { name: "QueueDescHigh", offset: 0x084, width: 4, access: "wo" },
    { name: "QueueDriverLow", offset: 0x090, width: 4, access: "wo" },
    { name: "QueueDriverHigh", offset: 0x094, width: 4, access: "wo" },
    { name: "QueueDeviceLow", offset: 0x0a0, width: 4, access: "wo" },
    { name: "QueueDeviceHigh", offset: 0x0a4, width: 4, access: "wo" },
    { name: "SHMSel", offset: 0x0ac, width: 4, access: "wo" },
    { name: "SHMLenLow", offset: 0x0b0, width: 4, access: "ro" },
    { name: "SHMLenHigh", offset: 0x0b4, width: 4, access: "ro" },
    { name: "SHMBaseLow", offset: 0x0b8, width: 4, access: "ro" },
    { name: "SHMBaseHigh", offset: 0x0bc, width: 4, access: "ro" },
    { name: "QueueReset", offset: 0x0c0, width: 4, access: "rw" },
    { name: "ConfigGeneration", offset: 0x0fc, width: 4, access: "ro" },
  ] as const,
);

/** MMIO `InterruptStatus` bit 0: used buffer notification (spec §4.2.2). */
export const VIRTIO_MMIO_INT_VRING = 1;
/** MMIO `InterruptStatus` bit 1: configuration change notification (spec §4.2.2). */
export const VIRTIO_MMIO_INT_CONFIG = 2;
