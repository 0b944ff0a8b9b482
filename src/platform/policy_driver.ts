/**
 * Phase 3 of planning a device: the **driver's** DMA layers (the guest view). Whether the virtio
 * driver uses the DMA API at all (Linux `vring_use_dma_api`), how the guest configures the IOMMU
 * the firmware shows it, and the layers it stacks: raw GPAs, dma-direct, `dma-ranges` offsets,
 * dma-iommu, pass-through, swiotlb / restricted-dma-pool bounce, Xen grants. Facts: DMA_MODES.md
 * §2 (Linux), §5 (firmware).
 *
 * @module
 */

import { CC_BOUNCE, CC_POOL, isLinux, versionAtLeast } from "./policy_guest.ts";
import type { Negotiation } from "./policy_negotiate.ts";
import type { DriverLayerPlan, GuestDomainState } from "./policy_types.ts";
import type { Topology, TopologyIommu } from "./topology_types.ts";

/** The firmware's answer for one device: the IOMMU it shows the guest, and the rule. */
export interface GuestCoverage {
  /** IOMMU id, or `null`. */
  iommu: string | null;
  /** The rule that decided. */
  why: string;
}

/** The driver side of a device's plan. */
export interface DriverSide {
  /** Does the virtio driver use the DMA API (`vring_use_dma_api`)? */
  usesDmaApi: boolean;
  /** Why (or why not). */
  dmaApiWhy: string;
  /** Driver layers, GPA -> bus address. */
  layers: DriverLayerPlan[];
  /** How the guest configured the IOMMU it sees for this device. */
  guestDomain: GuestDomainState;
}

/** Does the driver use the DMA API? (Linux `vring_use_dma_api`, or a firmware's equivalent). */
function dmaApiUse(t: Topology, apNeg: boolean): { yes: boolean; why: string } {
  const g = t.guest;
  if (g.dmaApi === "always") {
    return { yes: true, why: "guest.dmaApi = always (driver ignores the quirk)" };
  }
  if (g.dmaApi === "never") return { yes: false, why: "guest.dmaApi = never" };
  if (!isLinux(t)) {
    return apNeg
      ? { yes: true, why: `${g.os}: ACCESS_PLATFORM negotiated -> maps buffers` }
      : { yes: false, why: `${g.os}: no ACCESS_PLATFORM -> physical addresses` };
  }
  if (!versionAtLeast(g.version, "4.6")) {
    return { yes: false, why: `Linux ${g.version}: virtio_ring has no DMA API support yet (4.6)` };
  }
  if (apNeg) return { yes: true, why: "ACCESS_PLATFORM negotiated (!virtio_has_dma_quirk)" };
  if (t.machine.vmm === "xen") {
    return { yes: true, why: "xen_domain(): Xen always uses the DMA API" };
  }
  return { yes: false, why: "no ACCESS_PLATFORM: the DMA quirk, descriptors carry GPAs (M0)" };
}

/** How the guest configures `gm`, the IOMMU the firmware shows it (`blocked` when none). */
function guestDomainState(t: Topology, gm: TopologyIommu | undefined): GuestDomainState {
  const g = t.guest;
  if (!gm) return "blocked";
  const viommuUsable = gm.kind !== "virtio-iommu" ||
    (g.viommuDriver !== "none" && g.viommuDriver === gm.spec);
  if (!viommuUsable) return "blocked";
  if (g.iommu === "off") return "disabled";
  if (g.iommu === "passthrough") return "identity";
  return "dma";
}

/** The swiotlb / restricted-dma-pool layer, when the guest bounces. */
function bounceLayer(t: Topology): DriverLayerPlan | null {
  const g = t.guest, cc = t.machine.confidential;
  const bounce = CC_BOUNCE.has(cc) || g.forceSwiotlb || g.restrictedDmaPool || CC_POOL.has(cc);
  if (!bounce) return null;
  const pool = g.restrictedDmaPool || CC_POOL.has(cc);
  // virtio_max_dma_size (e6d6dd6c875e, 5.1) limits segments to the swiotlb maximum; with a
  // restricted-dma-pool it read the child device until the 2021-12 fix (SIZE_MAX).
  const limit = !isLinux(t) ||
    (versionAtLeast(g.version, "5.1") && (!pool || versionAtLeast(g.version, "5.17")));
  return {
    kind: "bounce",
    name: pool ? "restricted-dma-pool" : "swiotlb",
    mode: "M4",
    limitSegments: limit,
    why: CC_BOUNCE.has(cc)
      ? `${cc}: all DMA through shared bounce buffers`
      : pool
      ? "restricted-dma-pool: per-device bounce pool"
      : "swiotlb=force",
  };
}

/** The layer that produces bus addresses under the DMA API (below any bounce layer). */
function busLayer(
  t: Topology,
  gm: TopologyIommu | undefined,
  guestDomain: GuestDomainState,
  cov: GuestCoverage,
): DriverLayerPlan {
  const g = t.guest;
  if (gm && guestDomain === "dma") {
    if (gm.kind === "alpha-typhoon") {
      return {
        kind: "alpha",
        iommu: gm.id,
        mode: "M2/M5",
        why: `${cov.why}; pci_map_single_1: direct window if it fits, else SGMAP`,
      };
    }
    if (gm.kind === "tce" && g.useDdw && gm.ddw) {
      return {
        kind: "offset",
        name: "tce-ddw",
        mode: "M2",
        windows: [{ cpu: 0, bus: gm.ddwStart, size: 2 ** 52 }],
        why: "POWER dynamic DMA window: RAM direct-mapped at the DDW start",
      };
    }
    return {
      kind: "iommu",
      iommu: gm.id,
      iommuKind: gm.kind,
      lazy: g.iommu === "dma-lazy",
      mode: "M5",
      why: `${cov.why}; default domain ${g.iommu}`,
    };
  }
  if (gm && guestDomain === "identity") {
    return {
      kind: "passthrough",
      iommu: gm.id,
      mode: "M6",
      why: `${cov.why}; identity domain (iommu=pt)`,
    };
  }
  const dr = t.firmware.deviceTree?.dmaRanges ?? [];
  if (dr.length > 0) {
    return {
      kind: "offset",
      name: "dma-ranges",
      mode: "M2",
      windows: dr.map((r) => ({ cpu: r.cpu, bus: r.bus, size: r.size })),
      why: "dma-direct with bus_dma_region from device-tree dma-ranges",
    };
  }
  return {
    kind: "direct",
    mode: "M1",
    why: gm
      ? `${cov.why}, but the guest does not translate it (${guestDomain}): dma-direct`
      : `${cov.why}: dma-direct`,
  };
}

/**
 * Phase 3: the driver's DMA layers for a device the firmware covers as `cov`, given the
 * negotiation `n`.
 */
export function planDriverLayers(t: Topology, n: Negotiation, cov: GuestCoverage): DriverSide {
  const g = t.guest;
  const use = dmaApiUse(t, n.apNeg);
  const gm = t.iommus.find((m) => m.id === cov.iommu);
  const guestDomain = guestDomainState(t, gm);
  const layers: DriverLayerPlan[] = [];
  if (!use.yes) {
    layers.push({ kind: "raw-gpa", mode: "M0", why: use.why });
  } else if (t.machine.vmm === "xen") {
    layers.push(
      g.xenGrantDma
        ? { kind: "grant", mode: "M7", why: "xen,grant-dma: grant references as bus addresses" }
        : {
          kind: "swiotlb-xen",
          mode: "M8",
          why: "Xen: swiotlb-xen machine addresses (= GPA here)",
        },
    );
  } else {
    const bounce = bounceLayer(t);
    if (bounce) layers.push(bounce);
    layers.push(busLayer(t, gm, guestDomain, cov));
  }
  return { usesDmaApi: use.yes, dmaApiWhy: use.why, layers, guestDomain };
}
