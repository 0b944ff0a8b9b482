/**
 * Which IOMMU covers a device: as the firmware tells the guest (DMAR, IVRS, IORT, VIOT, device
 * tree, implicit host-bridge IOMMUs) and as it really sits in the host.
 *
 * @module
 */

import type { Topology, TopologyDevice } from "./topology_types.ts";
import { requesterId } from "./topology_layout.ts";

function bdfParts(b: string): { bus: number; rid: number } {
  const rid = requesterId(b)!;
  return { bus: rid >> 8, rid };
}

/**
 * Which IOMMU the firmware tells the guest translates `d`'s DMA, with the rule that decided.
 * Rules: DMAR device scopes, then an INCLUDE_PCI_ALL DRHD; IVRS select-all or entries; IORT
 * ID mappings (honouring the guest's `id_count` interpretation); VIOT PCI ranges (never the
 * virtio-iommu itself: "We're not translating ourself"); device-tree `iommus` and `iommu-map`;
 * POWER TCE, alpha and sun4u IOMMUs cover every PCI device of their host bridge.
 */
export function firmwareCoverage(
  t: Topology,
  d: TopologyDevice,
): { iommu: string | null; why: string } {
  const fw = t.firmware;
  const self = t.iommus.find((m) => m.kind === "virtio-iommu" && m.device === d.id);
  const dt = fw.deviceTree;
  const dtIommus = dt?.iommus.find((x) => x.device === d.id);
  if (dtIommus) return { iommu: dtIommus.iommu, why: `device tree: iommus = <&${dtIommus.iommu}>` };
  if (d.bdf === undefined) {
    return { iommu: null, why: `${d.transport} device: no firmware IOMMU link` };
  }
  const { bus, rid } = bdfParts(d.bdf);
  if (fw.dmar) {
    for (const u of fw.dmar.drhd) {
      for (const s of u.scopes) {
        const sp = bdfParts(s.bdf);
        if ((s.type === "endpoint" && sp.rid === rid) || (s.type === "bridge" && sp.bus === bus)) {
          return { iommu: u.iommu, why: `DMAR: DRHD ${u.iommu} lists ${s.type} ${s.bdf}` };
        }
      }
    }
    const all = fw.dmar.drhd.find((u) => u.includePciAll);
    if (all) return { iommu: all.iommu, why: `DMAR: DRHD ${all.iommu} has INCLUDE_PCI_ALL` };
  }
  if (fw.ivrs) {
    for (const h of fw.ivrs.ivhd) {
      if (h.selectAll) return { iommu: h.iommu, why: `IVRS: IVHD ${h.iommu} select-all entry` };
      if (h.devices.some((b) => bdfParts(b).rid === rid)) {
        return { iommu: h.iommu, why: `IVRS: IVHD ${h.iommu} lists ${d.bdf}` };
      }
    }
  }
  if (fw.iort) {
    for (const m of fw.iort.mappings) {
      // IORT id_count is "number of IDs minus one" (actbl2.h); a parser reading it as a count
      // drops the last RID of the range (EDGE_CASES E29).
      const n = t.guest.iortIdCount === "minus-one" ? m.idCount + 1 : m.idCount;
      if (rid >= m.inputBase && rid < m.inputBase + n) {
        return { iommu: m.iommu, why: `IORT: RC ID mapping [${m.inputBase}, +${n}) -> ${m.iommu}` };
      }
    }
  }
  if (fw.viot && !self) {
    for (const r of fw.viot.pciRanges) {
      if (rid >= bdfParts(r.bdfStart).rid && rid <= bdfParts(r.bdfEnd).rid) {
        return { iommu: fw.viot.iommu, why: `VIOT: PCI range ${r.bdfStart}..${r.bdfEnd}` };
      }
    }
  } else if (fw.viot && self) {
    return {
      iommu: null,
      why: "VIOT: the virtio-iommu is not translated by itself (Linux viot.c)",
    };
  }
  if (dt) {
    for (const m of dt.iommuMap) {
      if (rid >= m.ridBase && rid < m.ridBase + m.length) {
        return { iommu: m.iommu, why: `device tree: iommu-map <${m.ridBase} &${m.iommu} ...>` };
      }
    }
  }
  const implicit = t.iommus.find((m) =>
    m.kind === "tce" || m.kind === "alpha-typhoon" || m.kind === "sun4u"
  );
  if (implicit && !d.bypassIommuBus) {
    return {
      iommu: implicit.id,
      why: `${implicit.kind}: the host bridge's IOMMU covers every PCI device`,
    };
  }
  return { iommu: null, why: "no firmware table puts this device behind an IOMMU" };
}

/**
 * The IOMMU physically upstream of the device in the host (`behind`, or derived: PCI devices on
 * a non-bypass host bridge sit behind the machine's IOMMU; the virtio-iommu never translates
 * itself; MMIO devices only through device-tree `iommus`).
 */
export function hostIommu(t: Topology, d: TopologyDevice): string | null {
  if (d.behind === "none") return null;
  if (d.behind !== "auto") return d.behind;
  if (d.bypassIommuBus) return null;
  const self = t.iommus.find((m) => m.kind === "virtio-iommu" && m.device === d.id);
  const candidates = t.iommus.filter((m) => m !== self);
  if (d.transport === "pci") return candidates[0]?.id ?? null;
  const dt = t.firmware.deviceTree?.iommus.find((x) => x.device === d.id);
  return dt ? dt.iommu : null;
}
