/**
 * The policy model's plain data: feature names and bits, and the plan of one device (negotiated
 * features, probe outcome, the driver's DMA layers and the device's translation layers, each
 * with the rule that chose it). `policy.ts` builds plans; `resolve.ts` runs them.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import {
  hasFeature,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../virtio/features.ts";
import type { FeatureName, TopologyDevice, TopologyIommu } from "./topology_types.ts";

/** Feature name -> bit number (spec §6). */
export const FEATURE_BITS: Readonly<Record<FeatureName, number>> = Object.freeze({
  VERSION_1: VIRTIO_F_VERSION_1,
  ACCESS_PLATFORM: VIRTIO_F_ACCESS_PLATFORM,
  ORDER_PLATFORM: VIRTIO_F_ORDER_PLATFORM,
  RING_PACKED: VIRTIO_F_RING_PACKED,
  INDIRECT_DESC: VIRTIO_F_INDIRECT_DESC,
  EVENT_IDX: VIRTIO_F_EVENT_IDX,
});

/** The names of the bits set in `mask`, among {@link FEATURE_BITS}. */
export function featureNames(mask: bigint): FeatureName[] {
  return (Object.keys(FEATURE_BITS) as FeatureName[]).filter((n) =>
    hasFeature(mask, FEATURE_BITS[n])
  );
}

/** A fixed-offset DMA window: CPU range `[cpu, cpu + size)` appears at bus `[bus, bus + size)`. */
export interface WindowPlan {
  /** CPU (guest-physical) start. */
  cpu: U64;
  /** Bus start. */
  bus: U64;
  /** Size in bytes. */
  size: U64;
}

/**
 * One layer the driver's DMA API stacks, in mapping order (GPA first, bus address last).
 * `mode` is the DMA_MODES.md taxonomy code; `why` says which rule chose it.
 */
export type DriverLayerPlan =
  & { mode: string; why: string }
  & (
    | { kind: "raw-gpa" }
    | { kind: "direct" }
    | { kind: "offset"; name: string; windows: WindowPlan[] }
    | { kind: "iommu"; iommu: string; iommuKind: TopologyIommu["kind"]; lazy: boolean }
    | { kind: "passthrough"; iommu: string }
    | { kind: "bounce"; name: "swiotlb" | "restricted-dma-pool"; limitSegments: boolean }
    | { kind: "grant" }
    | { kind: "swiotlb-xen" }
    | { kind: "alpha"; iommu: string }
  );

/** The guest's configuration of one IOMMU for one endpoint, as the host IOMMU then behaves. */
export type GuestDomainState =
  | "dma" // a DMA domain with a page table the DMA API fills
  | "identity" // pass-through / identity domain, or virtio-iommu bypass
  | "blocked" // no context entry / unattached without bypass: every access faults
  | "disabled"; // the guest never enabled the IOMMU: translation off (identity)

/** One layer on the device's side, in translation order (bus address first, GPA last). */
export type DeviceLayerPlan =
  & { why: string }
  & (
    | { kind: "identity"; name: string }
    | { kind: "bridge-offset"; windows: WindowPlan[] }
    | { kind: "iommu"; iommu: string; iommuKind: TopologyIommu["kind"]; state: GuestDomainState }
    | { kind: "no-iotlb"; backend: string }
    | { kind: "grant-map"; supported: boolean }
    | { kind: "private-filter"; tech: string }
  );

/** Outcome of feature negotiation and probing for one device. */
export type ProbeOutcome =
  | { status: "ok" }
  | { status: "refused"; why: string }
  | { status: "probe-fails"; why: string };

/** The full plan for one device. */
export interface DevicePlan {
  /** The device. */
  device: TopologyDevice;
  /** Features the device offers. */
  offered: bigint;
  /** Features the driver accepts (of those it knows). */
  accepted: bigint;
  /** Negotiated = offered & accepted. */
  negotiated: bigint;
  /** FEATURES_OK / probe outcome. */
  probe: ProbeOutcome;
  /** Does the virtio driver use the DMA API for this device (`vring_use_dma_api`)? */
  usesDmaApi: boolean;
  /** Why (or why not). */
  dmaApiWhy: string;
  /** Driver layers, GPA -> bus address. */
  driverLayers: DriverLayerPlan[];
  /** Device layers, bus address -> GPA. */
  deviceLayers: DeviceLayerPlan[];
  /** The IOMMU the firmware tells the guest covers this device, or `null`. */
  guestIommu: string | null;
  /** The IOMMU really in front of the device in the host, or `null`. */
  hostIommu: string | null;
  /** Does the host route the DMA through `hostIommu`? */
  hostHonours: boolean;
  /** Static agreement of the two views (see {@link viewsAgree}). */
  agree: boolean;
  /** Notes that do not change the verdict (ordering hazards, extra IOTLB traffic, costs). */
  warnings: string[];
}
