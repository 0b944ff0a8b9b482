/**
 * An independent reference for the `topology` target: a small abstract interpreter of the two
 * DMA views, written apart from `src/platform` (`policy.ts` `viewsAgree`, `resolve.ts`,
 * `assembly.ts`, `predict.ts`). It follows one buffer's address as a *tag* (what kind of
 * address it is), through the driver's layers and then through the device's, one decision per
 * layer:
 *
 * - driver side: the last layer makes the bus address: a GPA (`raw-gpa`, `direct`, `bounce`,
 *   `swiotlb-xen`, `passthrough`), a bridge-offset address (`offset`), a DMA window of an IOMMU
 *   (`offset` named `tce-ddw`), an IOVA of one named IOMMU (`iommu`, `alpha`), or a grant
 *   reference (`grant`); a `bounce` layer anywhere puts the data into shared memory;
 * - device side, in order: `identity` dereferences the tag as it is; `bridge-offset` turns an
 *   offset address into a GPA (anything else becomes garbage); an IOMMU in state `dma` turns an
 *   IOVA of *that* IOMMU (or a DDW address) into a GPA and faults on anything else, `identity` /
 *   `disabled` pass addresses through, `blocked` faults; `no-iotlb` (vhost without an IOTLB under
 *   ACCESS_PLATFORM) and an unsupported `grant-map` fault; a supported `grant-map` turns a grant
 *   into a GPA; a `private-filter` (confidential guest) faults unless the data was bounced.
 *
 * The buffer arrives intact exactly when the tag ends as a GPA. The target compares this with
 * what the **ring run** observed (not with the plan's own `agree`), and checks the layer lists:
 * the assembled driver API and device space have one named layer per planned layer, the bounce
 * layer named as planned, the private filter named after its technology.
 * @module
 */

import type { DevicePlan, Topology } from "../../src/mod.ts";

/** What the reference says about one device. */
export interface ReferenceVerdict {
  /** Whether the buffer arrives intact (the two views compose to the identity on GPAs). */
  intact: boolean;
  /** The layer (kind, in plan order) where it goes wrong, or `null`. */
  wrongAt: string | null;
}

/**
 * Interprets the plan's layers (see the module documentation).
 * @param t the topology (its IOMMUs' boot bypass and UNMAP semantics, the guest's UNMAP habit).
 * @param plan a plan whose probe succeeded.
 */
export function referenceVerdict(t: Topology, plan: DevicePlan): ReferenceVerdict {
  const unit = (id: string) => t.iommus.find((m) => m.id === id);
  const driver = plan.driverLayers;
  const base = driver[driver.length - 1];
  if (base === undefined) return { intact: false, wrongAt: "driver: no layer" };
  const shared = driver.some((l) => l.kind === "bounce");
  let tag: string;
  switch (base.kind) {
    case "raw-gpa":
    case "direct":
    case "bounce":
    case "swiotlb-xen":
    case "passthrough":
      tag = "gpa";
      break;
    case "offset":
      tag = base.name === "tce-ddw" ? "ddw" : "offset";
      break;
    case "iommu": {
      // A guest that splits UNMAPs against QEMU's virtio-iommu, which removes every mapping the
      // range touches (spec §5.13.6.6: a split UNMAP is the driver's bug): a live one goes too.
      const m = unit(base.iommu);
      if (t.guest.splitUnmap && m?.kind === "virtio-iommu" && m.unmapSemantics === "qemu") {
        return { intact: false, wrongAt: "driver: split UNMAP" };
      }
      tag = `iova:${base.iommu}`;
      break;
    }
    case "alpha":
      tag = `iova:${base.iommu}`;
      break;
    case "grant":
      tag = "grant";
      break;
  }
  let translated = false; // whether an IOMMU or a grant map already produced a GPA
  for (const l of plan.deviceLayers) {
    switch (l.kind) {
      case "identity":
        break;
      case "bridge-offset":
        if (tag !== "offset") return { intact: false, wrongAt: "bridge-offset" };
        tag = "gpa";
        break;
      case "iommu":
        if (l.state === "blocked") {
          // virtio-iommu: an endpoint attached to no domain bypasses when config.bypass is set
          // (spec §5.13.4, VIRTIO_IOMMU_F_BYPASS_CONFIG), else every access faults
          const m = unit(l.iommu);
          if (m?.kind === "virtio-iommu" && m.bootBypass) break;
          return { intact: false, wrongAt: `iommu(${l.iommu})` };
        }
        if (l.state === "dma") {
          if (translated) break; // a second view of the same unit
          if (tag !== `iova:${l.iommu}` && tag !== "ddw") {
            return { intact: false, wrongAt: `iommu(${l.iommu})` };
          }
          tag = "gpa";
          translated = true;
        }
        break;
      case "no-iotlb":
        return { intact: false, wrongAt: "no-iotlb" };
      case "grant-map":
        if (!l.supported || tag !== "grant") return { intact: false, wrongAt: "grant-map" };
        tag = "gpa";
        translated = true;
        break;
      case "private-filter":
        if (!shared) return { intact: false, wrongAt: "private-filter" };
        break;
    }
  }
  return tag === "gpa" ? { intact: true, wrongAt: null } : { intact: false, wrongAt: `tag ${tag}` };
}

/**
 * The layer-list check: one named layer in the assembled API / space per planned layer, the
 * bounce layer and the private filter named as planned.
 * @param plan the plan.
 * @param driverApi the assembled driver API's name (`"swiotlb > vt-d-strict"`).
 * @param deviceSpace the assembled device space's name.
 * @returns a description of the first mismatch, or `null`.
 */
export function layerListMismatch(
  plan: DevicePlan,
  driverApi: string,
  deviceSpace: string,
): string | null {
  const drv = driverApi.split(" > ");
  const dev = deviceSpace.split(" > ");
  if (drv.length !== plan.driverLayers.length) {
    return `driver API "${driverApi}" has ${drv.length} layers, the plan ${plan.driverLayers.length} (${
      plan.driverLayers.map((l) => l.kind).join(", ")
    })`;
  }
  if (dev.length !== plan.deviceLayers.length) {
    return `device space "${deviceSpace}" has ${dev.length} layers, the plan ${plan.deviceLayers.length} (${
      plan.deviceLayers.map((l) => l.kind).join(", ")
    })`;
  }
  for (const [i, l] of plan.driverLayers.entries()) {
    if (l.kind === "bounce" && drv[i] !== l.name) {
      return `driver layer ${i} is "${drv[i]}", the plan bounces through ${l.name}`;
    }
  }
  for (const [i, l] of plan.deviceLayers.entries()) {
    if (l.kind === "private-filter" && !dev[i].includes(l.tech)) {
      return `device layer ${i} is "${dev[i]}", the plan filters private memory (${l.tech})`;
    }
  }
  return null;
}
