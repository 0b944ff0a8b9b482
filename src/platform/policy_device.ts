/**
 * Phase 4 of planning a device: the **device's** translation layers (the host's truth): whether
 * the VMM or the hardware really routes the DMA through the IOMMU in front of the device, a
 * host-bridge offset, vhost without a device IOTLB, Xen back-ends with or without grants, the
 * confidential-computing filter. Facts: DMA_MODES.md §3 (QEMU); EDGE_CASES.md decision table.
 *
 * @module
 */

import { CC_BOUNCE, CC_POOL } from "./policy_guest.ts";
import type { DriverSide, GuestCoverage } from "./policy_driver.ts";
import type { Negotiation } from "./policy_negotiate.ts";
import type { DeviceLayerPlan, GuestDomainState } from "./policy_types.ts";
import type { Topology, TopologyDevice, TopologyIommu } from "./topology_types.ts";

/** The device side of a device's plan. */
export interface DeviceSide {
  /** Device layers, bus address -> GPA. */
  layers: DeviceLayerPlan[];
  /** Does the host route the DMA through the IOMMU in front of the device? */
  hostHonours: boolean;
}

/** Does the host route `d`'s DMA through its IOMMU, and by which rule? */
function hostHonoursIommu(
  t: Topology,
  d: TopologyDevice,
  apOffered: boolean,
): { yes: boolean; why: string } {
  const be = d.backend.kind;
  if (d.honoursIommu !== "auto") {
    return {
      yes: d.honoursIommu === "yes",
      why: `honoursIommu = ${d.honoursIommu} (injected host behaviour)`,
    };
  }
  if (be === "hardware" || be === "openvmm" || t.machine.vmm === "openvmm") {
    return {
      yes: true,
      why: be === "hardware"
        ? "physical device: the IOMMU translates all of its DMA"
        : "OpenVMM: the emulated SMMU translates all DMA",
    };
  }
  if (be === "xen-backend") return { yes: false, why: "Xen back-end: no vIOMMU in the data path" };
  const getDmaAs = d.transport === "pci";
  return {
    yes: apOffered && getDmaAs,
    why: !apOffered
      ? "QEMU: iommu_platform=off -> dma_as = address_space_memory (virtio-bus.c)"
      : getDmaAs
      ? "QEMU: iommu_platform=on -> dma_as = the PCI bus IOMMU address space"
      : `QEMU: virtio-${d.transport} has no get_dma_as -> address_space_memory`,
  };
}

/** The host IOMMU layer `hm` that honours the device's DMA, in the state the guest left it. */
function iommuLayer(
  t: Topology,
  d: TopologyDevice,
  hm: TopologyIommu,
  apNeg: boolean,
  cov: GuestCoverage,
  guestDomain: GuestDomainState,
  honourWhy: string,
): DeviceLayerPlan {
  const be = d.backend.kind;
  const raw: GuestDomainState = cov.iommu === hm.id
    ? guestDomain
    : t.guest.iommu === "off"
    ? "disabled"
    : hm.kind === "virtio-iommu"
    ? "blocked"
    : (hm.kind === "tce" || hm.kind === "alpha-typhoon" || hm.kind === "sun4u")
    ? "dma"
    : "blocked";
  // virtio-iommu: an endpoint attached to no domain bypasses translation when config.bypass is
  // set (spec §5.13.4), so the device sees GPAs as if the IOMMU were in pass-through.
  const state: GuestDomainState = raw === "blocked" && hm.kind === "virtio-iommu" && hm.bootBypass
    ? "identity"
    : raw;
  return {
    kind: "iommu",
    iommu: hm.id,
    iommuKind: hm.kind,
    state,
    why: `${honourWhy}${
      (be === "vhost-kernel" || be === "vhost-user") && apNeg ? "; vhost device IOTLB (M9)" : ""
    }${
      hm.kind === "virtio-iommu" && raw === "blocked"
        ? hm.bootBypass
          ? "; endpoint never attached, but config.bypass is set at boot: accesses pass untranslated"
          : "; endpoint never attached and config.bypass is clear: every access faults"
        : ""
    }`,
  };
}

/** The layer that turns the device's bus addresses into GPAs (or cannot). */
function coreLayer(
  t: Topology,
  d: TopologyDevice,
  n: Negotiation,
  cov: GuestCoverage,
  driver: DriverSide,
  hm: TopologyIommu | undefined,
  honours: { yes: boolean; why: string },
): DeviceLayerPlan {
  const be = d.backend.kind;
  if (be === "xen-backend") {
    if (driver.layers[0]?.kind === "grant" || d.backend.grants) {
      return {
        kind: "grant-map",
        supported: d.backend.grants,
        why: d.backend.grants ? "back-end maps grant references" : "back-end without grant support",
      };
    }
    return { kind: "identity", name: "xen-backend", why: "back-end maps guest frames directly" };
  }
  if (
    (be === "vhost-kernel" || be === "vhost-user" || be === "vduse") && n.apNeg && !d.backend.iotlb
  ) {
    return {
      kind: "no-iotlb",
      backend: be,
      why: `${be} with ACCESS_PLATFORM but without device IOTLB support: cannot translate`,
    };
  }
  if (hm && honours.yes) {
    return iommuLayer(t, d, hm, n.apNeg, cov, driver.guestDomain, honours.why);
  }
  return {
    kind: "identity",
    name: be === "hardware"
      ? "physical"
      : be === "qemu" || be === "openvmm"
      ? "address_space_memory"
      : be,
    why: hm ? honours.why : "no IOMMU in front of the device",
  };
}

/**
 * Phase 4: the device's translation layers, for a device whose host IOMMU is `hostM`, covered
 * for the guest as `cov`, whose driver stacks `driver`.
 */
export function planDeviceLayers(
  t: Topology,
  d: TopologyDevice,
  n: Negotiation,
  cov: GuestCoverage,
  driver: DriverSide,
  hostM: string | null,
): DeviceSide {
  const layers: DeviceLayerPlan[] = [];
  const hm = t.iommus.find((m) => m.id === hostM);
  const honours = hostHonoursIommu(t, d, n.apOffered);
  if (d.bridgeOffset) {
    const dr = t.firmware.deviceTree?.dmaRanges ?? [];
    layers.push({
      kind: "bridge-offset",
      windows: dr.map((r) => ({ cpu: r.cpu, bus: r.bus, size: r.size })),
      why: "the host bridge converts bus addresses per dma-ranges",
    });
  }
  layers.push(coreLayer(t, d, n, cov, driver, hm, honours));
  const cc = t.machine.confidential;
  if (CC_BOUNCE.has(cc) || CC_POOL.has(cc)) {
    layers.push({
      kind: "private-filter",
      tech: cc,
      why: `${cc}: the host reaches shared pages only`,
    });
  }
  return { layers, hostHonours: honours.yes };
}
