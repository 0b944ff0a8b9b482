/**
 * Device-independent feature bits (spec §6 "Reserved Feature Bits") and helpers.
 *
 * Feature sets are 64-bit, so they are `bigint` masks (negotiation is a cold path); constants
 * named `VIRTIO_F_*` are **bit numbers**, as in the spec. Queues turn the bits they need into
 * booleans at construction.
 *
 * @module
 */

/** Bit 24, legacy: notify on empty avail ring. */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
/** Bit 27, legacy: arbitrary descriptor layouts. */
export const VIRTIO_F_ANY_LAYOUT = 27;
/** Bit 28: indirect descriptors (spec §2.7.5.3 / §2.8.7 "Indirect Descriptors"). */
export const VIRTIO_F_INDIRECT_DESC = 28;
/** Linux / legacy name of {@link VIRTIO_F_INDIRECT_DESC}. */
export const VIRTIO_RING_F_INDIRECT_DESC: number = VIRTIO_F_INDIRECT_DESC;
/** Bit 29: `used_event` / `avail_event` notification suppression (spec §2.7.7, §2.7.10). */
export const VIRTIO_F_EVENT_IDX = 29;
/** Linux / legacy name of {@link VIRTIO_F_EVENT_IDX}. */
export const VIRTIO_RING_F_EVENT_IDX: number = VIRTIO_F_EVENT_IDX;
/** Bit 32: virtio 1.x device. */
export const VIRTIO_F_VERSION_1 = 32;
/** Bit 33: the device is behind the platform's DMA translation (was `VIRTIO_F_IOMMU_PLATFORM`). */
export const VIRTIO_F_ACCESS_PLATFORM = 33;
/** Old name of {@link VIRTIO_F_ACCESS_PLATFORM}. */
export const VIRTIO_F_IOMMU_PLATFORM: number = VIRTIO_F_ACCESS_PLATFORM;
/** Bit 34: packed virtqueue layout (spec §2.8). */
export const VIRTIO_F_RING_PACKED = 34;
/** Bit 35: buffers are used in the order they are made available. */
export const VIRTIO_F_IN_ORDER = 35;
/** Bit 36: hardware-grade memory ordering required. */
export const VIRTIO_F_ORDER_PLATFORM = 36;
/** Bit 37: SR-IOV. */
export const VIRTIO_F_SR_IOV = 37;
/** Bit 38: notifications carry the next avail position. */
export const VIRTIO_F_NOTIFICATION_DATA = 38;
/** Bit 39: notification config data. */
export const VIRTIO_F_NOTIF_CONFIG_DATA = 39;
/** Bit 40: per-queue reset. */
export const VIRTIO_F_RING_RESET = 40;
/** Bit 41: admin virtqueue. */
export const VIRTIO_F_ADMIN_VQ = 41;

/** The single-bit mask of feature bit `bit`. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** True when feature bit `bit` is set in `features`. */
export function hasFeature(features: bigint, bit: number): boolean {
  return ((features >> BigInt(bit)) & 1n) === 1n;
}

/** A feature mask with all the given bits set. */
export function featureMask(...bits: number[]): bigint {
  let m = 0n;
  for (const b of bits) m |= featureBit(b);
  return m;
}

// --- Feature negotiation and the VIRTIO_F_ACCESS_PLATFORM rules ----------------------------

/** Policy knobs of {@link negotiateFeatures}: what each side insists on. */
export interface NegotiationPolicy {
  /**
   * The device refuses FEATURES_OK when it offered `VIRTIO_F_ACCESS_PLATFORM` and the driver did
   * not accept it. Spec §6.2: "A device MAY fail to operate further if VIRTIO_F_ACCESS_PLATFORM
   * is not accepted"; QEMU does (`virtio_validate_features` returns -EFAULT). Default `true`.
   */
  deviceRequiresAccessPlatform?: boolean;
  /**
   * The driver refuses the device unless VERSION_1 and ACCESS_PLATFORM are negotiated: Linux
   * `virtio_features_ok()` under restricted memory access (SEV, TDX, s390 PV: "device must
   * provide VIRTIO_F_ACCESS_PLATFORM", -ENODEV). Default `false`.
   */
  driverRequiresAccessPlatform?: boolean;
}

/** Outcome of {@link negotiateFeatures}. */
export interface FeatureNegotiation {
  /** What the device offered. */
  offered: bigint;
  /** What the driver wrote back: its wishes restricted to the offer (spec §2.2.1). */
  accepted: bigint;
  /** The features in force when `ok` (equal to `accepted`), else 0. */
  negotiated: bigint;
  /** Whether FEATURES_OK sticks (spec §3.1.1 step 5-6) and the driver goes on. */
  ok: boolean;
  /** Who refused: `"device"` (FEATURES_OK not set) or `"driver"` (probe failed). */
  refusedBy?: "device" | "driver";
  /** Why negotiation failed, naming the feature and the rule. */
  reason?: string;
}

/**
 * Feature negotiation (spec §2.2 "Feature Bits", §3.1.1 "Driver Requirements: Device
 * Initialization"): the device offers, the driver accepts a subset ("The driver MUST NOT accept a
 * feature which the device did not offer", §2.2.1), and the device sets FEATURES_OK or refuses
 * ("otherwise it MUST fail to set the FEATURES_OK device status bit", §2.2.2). Applies the
 * `VIRTIO_F_ACCESS_PLATFORM` rules of spec §6 (see {@link NegotiationPolicy}).
 * @param offered device feature bits.
 * @param wanted features the driver would like (bits the device did not offer are dropped).
 */
export function negotiateFeatures(
  offered: bigint,
  wanted: bigint,
  policy: NegotiationPolicy = {},
): FeatureNegotiation {
  const accepted = offered & wanted;
  const ap = featureBit(VIRTIO_F_ACCESS_PLATFORM);
  if (
    (policy.deviceRequiresAccessPlatform ?? true) && (offered & ap) !== 0n && (accepted & ap) === 0n
  ) {
    return {
      offered,
      accepted,
      negotiated: 0n,
      ok: false,
      refusedBy: "device",
      reason: "device offered VIRTIO_F_ACCESS_PLATFORM (bit 33) and the driver declined it: " +
        "FEATURES_OK refused (spec §6.2 MAY; QEMU virtio_validate_features -EFAULT)",
    };
  }
  if (policy.driverRequiresAccessPlatform) {
    for (
      const [bit, name] of [[VIRTIO_F_VERSION_1, "VIRTIO_F_VERSION_1"], [
        VIRTIO_F_ACCESS_PLATFORM,
        "VIRTIO_F_ACCESS_PLATFORM",
      ]] as const
    ) {
      if (!hasFeature(accepted, bit)) {
        return {
          offered,
          accepted,
          negotiated: 0n,
          ok: false,
          refusedBy: "driver",
          reason:
            `restricted memory access: device must provide ${name} (Linux virtio_features_ok -ENODEV)`,
        };
      }
    }
  }
  return { offered, accepted, negotiated: accepted, ok: true };
}

/**
 * Which addresses the device dereferences, from the negotiated features alone (spec §6
 * VIRTIO_F_ACCESS_PLATFORM: when it is 0 "the device will always use physical addresses matching
 * addresses used by the driver ... This overrides any platform-specific description of whether
 * device access is limited or translated in any way, e.g. whether an IOMMU may be present"):
 * - `"raw-gpa"`: not negotiated, the device uses GPAs whatever the firmware tables say
 *   (QEMU keeps `address_space_memory`, DMA_MODES.md §3.1);
 * - `"platform"`: negotiated, the platform's translation applies (IOMMU, windows, bounce pool).
 */
export function deviceAddressing(negotiated: bigint): "raw-gpa" | "platform" {
  return hasFeature(negotiated, VIRTIO_F_ACCESS_PLATFORM) ? "platform" : "raw-gpa";
}

/**
 * Linux `vring_use_dma_api()` (DMA_MODES.md §2.1): the driver uses the DMA API when
 * ACCESS_PLATFORM is negotiated, or always under Xen; otherwise it hands the device raw GPAs
 * (the "DMA quirk", spec §6.1 "If VIRTIO_F_ACCESS_PLATFORM is not offered, then a driver MUST
 * pass only physical addresses to the device").
 * @param xen whether the guest is a Xen domain.
 */
export function driverUsesDmaApi(negotiated: bigint, xen = false): boolean {
  return hasFeature(negotiated, VIRTIO_F_ACCESS_PLATFORM) || xen;
}
