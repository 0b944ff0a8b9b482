/**
 * The policy model: from a {@link Topology}, for each virtio device, which features are
 * negotiated (or why negotiation or probing fails), which DMA layers the **driver** stacks
 * (guest view: Linux `vring_use_dma_api`, firmware IOMMU coverage, swiotlb) and which layers the
 * **device** goes through (host view: what the VMM or hardware really does).
 *
 * This module is pure decision logic: it returns plans (plain data with a reason for every
 * choice, `policy_types.ts`); `resolve.ts` turns plans into running DMA models. The phases live
 * apart: `policy_negotiate.ts` (negotiate, probe), `policy_driver.ts` (driver layers),
 * `policy_device.ts` (device layers), over `policy_coverage.ts` (firmware and host IOMMU
 * coverage) and `policy_guest.ts` (the guest era model). Facts: DMA_MODES.md §2 (Linux), §3
 * (QEMU), §5 (firmware); EDGE_CASES.md decision table.
 *
 * @module
 */

import { hasFeature, VIRTIO_F_ORDER_PLATFORM } from "../virtio/features.ts";
import { firmwareCoverage, hostIommu } from "./policy_coverage.ts";
import { type DriverSide, planDriverLayers } from "./policy_driver.ts";
import { planDeviceLayers } from "./policy_device.ts";
import { negotiate, type Negotiation, probe } from "./policy_negotiate.ts";
import type { DeviceLayerPlan, DevicePlan, DriverLayerPlan } from "./policy_types.ts";
import type { Topology, TopologyDevice } from "./topology_types.ts";

/**
 * Builds the plan of every virtio device in `t` (see {@link DevicePlan}).
 * @returns one plan per `t.devices` entry, in order.
 */
export function planTopology(t: Topology): DevicePlan[] {
  return t.devices.map((d) => planDevice(t, d));
}

/**
 * Builds the plan of one device of `t`, in four phases: {@link negotiate} features, {@link probe},
 * the driver's layers ({@link planDriverLayers}), the device's layers ({@link planDeviceLayers});
 * then the warnings and the static agreement of the two views.
 */
export function planDevice(t: Topology, d: TopologyDevice): DevicePlan {
  const n = negotiate(t, d);
  const outcome = probe(t, d, n);
  const guestCov = firmwareCoverage(t, d);
  const hostM = hostIommu(t, d);
  const driver = planDriverLayers(t, n, guestCov);
  const device = planDeviceLayers(t, d, n, guestCov, driver, hostM);
  return {
    device: d,
    offered: n.offered,
    accepted: n.accepted,
    negotiated: n.negotiated,
    probe: outcome,
    usesDmaApi: driver.usesDmaApi,
    dmaApiWhy: driver.dmaApiWhy,
    driverLayers: driver.layers,
    deviceLayers: device.layers,
    guestIommu: guestCov.iommu,
    hostIommu: hostM,
    hostHonours: device.hostHonours,
    // A racy UNMAP against QEMU's UNMAP loop removes a live mapping: an injected driver bug.
    agree: viewsAgree(driver.layers, device.layers) &&
      !(t.guest.splitUnmap && splitUnmapHits(t, driver.layers)),
    warnings: planWarnings(t, d, n, driver, hostM),
  };
}

/** Notes that do not change the verdict (ordering hazards, extra IOTLB traffic, costs). */
function planWarnings(
  t: Topology,
  d: TopologyDevice,
  n: Negotiation,
  driver: DriverSide,
  hostM: string | null,
): string[] {
  const warnings: string[] = [];
  const be = d.backend.kind;
  const hm = t.iommus.find((m) => m.id === hostM);
  if (
    hasFeature(n.offered, VIRTIO_F_ORDER_PLATFORM) &&
    !hasFeature(n.negotiated, VIRTIO_F_ORDER_PLATFORM)
  ) {
    warnings.push(
      "ORDER_PLATFORM offered but not negotiated: weak (SMP) barriers; ordering bugs on weakly ordered CPUs",
    );
  }
  if (be === "hardware" && !n.apOffered) {
    warnings.push(
      "physical virtio hardware without ACCESS_PLATFORM: the spec recommends offering it and ORDER_PLATFORM",
    );
  }
  if (n.apNeg && (be === "vhost-kernel" || be === "vhost-user") && d.backend.iotlb && !hm) {
    warnings.push(
      "ACCESS_PLATFORM with no vIOMMU: vhost still runs with a device IOTLB (extra MISS/UPDATE traffic)",
    );
  }
  const dl = driver.layers.at(-1);
  if (dl?.kind === "iommu" && dl.lazy) {
    warnings.push(
      "lazy invalidation: unmapped IOVAs stay valid in the IOTLB for up to 256 entries / 10 ms",
    );
  }
  return warnings;
}

/**
 * Static agreement of the two views: the driver's last (bus-producing) layer and the device's
 * translating layer interpret bus addresses the same way, no layer is unable to translate, and a
 * confidential guest bounces through shared memory. A topology whose views agree must always
 * transfer intact data (the fuzz oracle).
 */
export function viewsAgree(
  driver: readonly DriverLayerPlan[],
  device: readonly DeviceLayerPlan[],
): boolean {
  const base = driver.at(-1);
  if (!base) return false;
  const bounced = driver.some((l) => l.kind === "bounce");
  let core: DeviceLayerPlan | undefined;
  for (const l of device) {
    if (l.kind === "no-iotlb") return false;
    if (l.kind === "grant-map" && !l.supported) return false;
    if (l.kind === "private-filter" && !bounced) return false;
    if (l.kind === "identity" || l.kind === "iommu" || l.kind === "grant-map") core = core ?? l;
  }
  if (!core) return false;
  const bridge = device.some((l) => l.kind === "bridge-offset");
  if (bridge && base.kind !== "offset") return false;
  const identityLike = core.kind === "identity" ||
    (core.kind === "iommu" && (core.state === "identity" || core.state === "disabled"));
  switch (base.kind) {
    case "raw-gpa":
    case "direct":
    case "swiotlb-xen":
    case "bounce":
      return identityLike;
    case "passthrough":
      return identityLike;
    case "iommu":
      return core.kind === "iommu" && core.iommu === base.iommu && core.state === "dma";
    case "alpha":
      return core.kind === "iommu" && core.iommu === base.iommu && core.state === "dma";
    case "offset":
      return base.name === "tce-ddw"
        ? !bridge && core.kind === "iommu" && core.iommu !== undefined && core.state === "dma"
        : bridge && identityLike;
    case "grant":
      return core.kind === "grant-map" && core.supported;
  }
}

function splitUnmapHits(t: Topology, driver: readonly DriverLayerPlan[]): boolean {
  const b = driver.at(-1);
  const m = b?.kind === "iommu" ? t.iommus.find((x) => x.id === b.iommu) : undefined;
  return m?.kind === "virtio-iommu" && m.unmapSemantics === "qemu";
}
