/**
 * The policy model: from a {@link Topology}, for each virtio device, which features are
 * negotiated (or why negotiation or probing fails), which DMA layers the **driver** stacks
 * (guest view: Linux `vring_use_dma_api`, firmware IOMMU coverage, swiotlb) and which layers the
 * **device** goes through (host view: what the VMM or hardware really does).
 *
 * This module is pure decision logic: it returns plans (plain data with a reason for every
 * choice); `resolve.ts` turns plans into running DMA models. Facts: DMA_MODES.md §2 (Linux), §3
 * (QEMU), §5 (firmware); EDGE_CASES.md decision table.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import {
  featureBit,
  hasFeature,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../virtio/features.ts";
import type { FeatureName, Topology, TopologyDevice, TopologyIommu } from "./topology_types.ts";
import { requesterId, runLayout } from "./topology_layout.ts";

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

// ---------------------------------------------------------------------------------------------
// Versions

function ver(v: string): number[] {
  return v.split(".").map((x) => parseInt(x, 10));
}
/** True when version `v` >= `min` ("major.minor[.patch]"). */
export function versionAtLeast(v: string, min: string): boolean {
  const a = ver(v), b = ver(min);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0, y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Firmware coverage (the guest's view)

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

// ---------------------------------------------------------------------------------------------
// Guest era model

function isLinux(t: Topology): boolean {
  return t.guest.os === "linux";
}

function acceptsAp(t: Topology): { yes: boolean; why: string } {
  const g = t.guest;
  if (g.acceptsAccessPlatform !== "auto") {
    return {
      yes: g.acceptsAccessPlatform === "yes",
      why: `guest.acceptsAccessPlatform = ${g.acceptsAccessPlatform}`,
    };
  }
  switch (g.os) {
    case "linux":
      return versionAtLeast(g.version, "4.8")
        ? { yes: true, why: "Linux >= 4.8 knows VIRTIO_F_IOMMU_PLATFORM (1a937693993f)" }
        : { yes: false, why: `Linux ${g.version} predates VIRTIO_F_IOMMU_PLATFORM (4.8)` };
    case "u-boot":
      return versionAtLeast(g.version, "2023.05")
        ? { yes: true, why: "U-Boot >= 2023.05 accepts ACCESS_PLATFORM (bounce buffers)" }
        : { yes: false, why: `U-Boot ${g.version} ignores ACCESS_PLATFORM` };
    case "ipxe":
      return versionAtLeast(g.version, "1.21")
        ? { yes: true, why: "iPXE >= 1.21 (2021) maps virtio buffers through the PCI DMA API" }
        : { yes: false, why: `iPXE ${g.version} ignores ACCESS_PLATFORM` };
    case "edk2":
      return {
        yes: true,
        why: "OVMF virtio drivers map through PciIo when ACCESS_PLATFORM is set",
      };
    case "other":
      return { yes: false, why: "guest.os = other: assumed not to know bit 33" };
  }
}

/** Whether the guest requires VERSION_1 + ACCESS_PLATFORM (restricted memory access). */
function restrictedAccess(t: Topology): { yes: boolean; why: string } {
  const g = t.guest, cc = t.machine.confidential;
  if (g.restrictedMemAccess !== "auto") {
    return {
      yes: g.restrictedMemAccess === "enforce",
      why: `guest.restrictedMemAccess = ${g.restrictedMemAccess}`,
    };
  }
  if (!isLinux(t)) return { yes: false, why: "not Linux" };
  const rule: Record<string, [string, string]> = {
    "s390-pv": ["5.10", "s390 PV: arch_has_restricted_virtio_memory_access (4ce1cf7b02ed)"],
    sev: ["5.13", "SEV guest enforces restricted virtio memory access (9da54be651f8)"],
    "sev-snp": ["5.13", "SEV guest enforces restricted virtio memory access (9da54be651f8)"],
    tdx: ["5.19", "TDX guest: virtio_require_restricted_mem_acc (tdx_early_init)"],
  };
  const r = rule[cc];
  if (!r) {
    return {
      yes: false,
      why: cc === "none" ? "not a confidential guest" : `${cc}: not enforced by the model`,
    };
  }
  return versionAtLeast(g.version, r[0])
    ? { yes: true, why: r[1] }
    : { yes: false, why: `Linux ${g.version} predates the enforcement (${r[0]}) for ${cc}` };
}

const CC_BOUNCE = new Set(["sev", "sev-snp", "tdx", "s390-pv", "power-pef"]);
const CC_POOL = new Set(["pkvm", "cca"]);

// ---------------------------------------------------------------------------------------------
// Planning

/**
 * Builds the plan of every virtio device in `t` (see {@link DevicePlan}).
 * @returns one plan per `t.devices` entry, in order.
 */
export function planTopology(t: Topology): DevicePlan[] {
  return t.devices.map((d) => planDevice(t, d));
}

/** Builds the plan of one device of `t`. */
export function planDevice(t: Topology, d: TopologyDevice): DevicePlan {
  const warnings: string[] = [];
  const g = t.guest;
  // --- offers and acceptance (legacy: 32 feature bits only) ---
  let offered = 0n;
  for (const f of d.offers) offered |= featureBit(FEATURE_BITS[f]);
  if (d.legacy) offered &= 0xffff_ffffn;
  const ap = acceptsAp(t);
  const acceptOrder = g.acceptsOrderPlatform === "auto" ? ap.yes : g.acceptsOrderPlatform === "yes";
  let accepted = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_INDIRECT_DESC) |
    featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_RING_PACKED);
  if (ap.yes) accepted |= featureBit(VIRTIO_F_ACCESS_PLATFORM);
  if (acceptOrder) accepted |= featureBit(VIRTIO_F_ORDER_PLATFORM);
  const negotiated = offered & accepted;
  const apOffered = hasFeature(offered, VIRTIO_F_ACCESS_PLATFORM);
  const apNeg = hasFeature(negotiated, VIRTIO_F_ACCESS_PLATFORM);

  const guestCov = firmwareCoverage(t, d);
  const hostM = hostIommu(t, d);
  const iommuOf = (id: string | null) => t.iommus.find((m) => m.id === id);

  // --- probe outcome ---
  let probe: ProbeOutcome = { status: "ok" };
  const ra = restrictedAccess(t);
  const viommu = t.iommus.find((m) => m.kind === "virtio-iommu" && m.device === d.id);
  if (
    viommu && viommu.kind === "virtio-iommu" && g.viommuDriver !== "none" &&
    g.viommuDriver !== viommu.spec
  ) {
    probe = {
      status: "probe-fails",
      why:
        `virtio-iommu driver ${g.viommuDriver} against a ${viommu.spec} device: config misread ` +
        "(probe_size read at 0x1C = domain_range.end; MAP flag bits differ)",
    };
  } else if (ra.yes && !hasFeature(offered, VIRTIO_F_VERSION_1)) {
    probe = { status: "probe-fails", why: `device must provide VIRTIO_F_VERSION_1 (${ra.why})` };
  } else if (ra.yes && !apOffered) {
    probe = {
      status: "probe-fails",
      why: `device must provide VIRTIO_F_ACCESS_PLATFORM (${ra.why})`,
    };
  } else if (apOffered && !apNeg && !d.legacy) {
    probe = {
      status: "refused",
      why: `the device offers ACCESS_PLATFORM and the driver does not accept it (${ap.why}): ` +
        "FEATURES_OK rejected (QEMU virtio_validate_features -EFAULT)",
    };
  }
  const ringGpa = Number(t.workload.ringGpa ?? defaultRingGpa(t));
  if (probe.status === "ok" && d.legacy && ringGpa / 4096 >= 2 ** 32) {
    probe = {
      status: "probe-fails",
      why: "legacy queue PFN register is 32 bits: ring at GPA >= 2^44 -> setup fails -E2BIG",
    };
  }

  // --- does the driver use the DMA API? (vring_use_dma_api) ---
  const xen = t.machine.vmm === "xen";
  let usesDmaApi: boolean;
  let dmaApiWhy: string;
  if (g.dmaApi === "always") {
    [usesDmaApi, dmaApiWhy] = [true, "guest.dmaApi = always (driver ignores the quirk)"];
  } else if (g.dmaApi === "never") [usesDmaApi, dmaApiWhy] = [false, "guest.dmaApi = never"];
  else if (!isLinux(t)) {
    [usesDmaApi, dmaApiWhy] = apNeg
      ? [true, `${g.os}: ACCESS_PLATFORM negotiated -> maps buffers`]
      : [false, `${g.os}: no ACCESS_PLATFORM -> physical addresses`];
  } else if (!versionAtLeast(g.version, "4.6")) {
    [usesDmaApi, dmaApiWhy] = [
      false,
      `Linux ${g.version}: virtio_ring has no DMA API support yet (4.6)`,
    ];
  } else if (apNeg) {
    [usesDmaApi, dmaApiWhy] = [true, "ACCESS_PLATFORM negotiated (!virtio_has_dma_quirk)"];
  } else if (xen) [usesDmaApi, dmaApiWhy] = [true, "xen_domain(): Xen always uses the DMA API"];
  else {
    [usesDmaApi, dmaApiWhy] = [
      false,
      "no ACCESS_PLATFORM: the DMA quirk, descriptors carry GPAs (M0)",
    ];
  }

  // --- driver layers ---
  const driver: DriverLayerPlan[] = [];
  const cc = t.machine.confidential;
  let guestDomain: GuestDomainState = "blocked";
  const gm = iommuOf(guestCov.iommu);
  const viommuUsable = (m: TopologyIommu) =>
    m.kind !== "virtio-iommu" || (g.viommuDriver !== "none" && g.viommuDriver === m.spec);
  if (gm) {
    if (!viommuUsable(gm)) guestDomain = "blocked";
    else if (g.iommu === "off") guestDomain = "disabled";
    else if (g.iommu === "passthrough") guestDomain = "identity";
    else guestDomain = "dma";
  }
  if (!usesDmaApi) {
    driver.push({ kind: "raw-gpa", mode: "M0", why: dmaApiWhy });
  } else if (xen) {
    driver.push(
      g.xenGrantDma
        ? { kind: "grant", mode: "M7", why: "xen,grant-dma: grant references as bus addresses" }
        : {
          kind: "swiotlb-xen",
          mode: "M8",
          why: "Xen: swiotlb-xen machine addresses (= GPA here)",
        },
    );
  } else {
    const bounce = CC_BOUNCE.has(cc) || g.forceSwiotlb || g.restrictedDmaPool || CC_POOL.has(cc);
    if (bounce) {
      const pool = g.restrictedDmaPool || CC_POOL.has(cc);
      // virtio_max_dma_size (e6d6dd6c875e, 5.1) limits segments to the swiotlb maximum; with a
      // restricted-dma-pool it read the child device until the 2021-12 fix (SIZE_MAX).
      const limit = !isLinux(t) ||
        (versionAtLeast(g.version, "5.1") && (!pool || versionAtLeast(g.version, "5.17")));
      driver.push({
        kind: "bounce",
        name: pool ? "restricted-dma-pool" : "swiotlb",
        mode: "M4",
        limitSegments: limit,
        why: CC_BOUNCE.has(cc)
          ? `${cc}: all DMA through shared bounce buffers`
          : pool
          ? "restricted-dma-pool: per-device bounce pool"
          : "swiotlb=force",
      });
    }
    if (gm && guestDomain === "dma") {
      if (gm.kind === "alpha-typhoon") {
        driver.push({
          kind: "alpha",
          iommu: gm.id,
          mode: "M2/M5",
          why: `${guestCov.why}; pci_map_single_1: direct window if it fits, else SGMAP`,
        });
      } else if (gm.kind === "tce" && g.useDdw && gm.ddw) {
        driver.push({
          kind: "offset",
          name: "tce-ddw",
          mode: "M2",
          windows: [{ cpu: 0, bus: gm.ddwStart, size: 2 ** 52 }],
          why: "POWER dynamic DMA window: RAM direct-mapped at the DDW start",
        });
      } else {
        driver.push({
          kind: "iommu",
          iommu: gm.id,
          iommuKind: gm.kind,
          lazy: g.iommu === "dma-lazy",
          mode: "M5",
          why: `${guestCov.why}; default domain ${g.iommu}`,
        });
      }
    } else if (gm && guestDomain === "identity") {
      driver.push({
        kind: "passthrough",
        iommu: gm.id,
        mode: "M6",
        why: `${guestCov.why}; identity domain (iommu=pt)`,
      });
    } else {
      const dr = t.firmware.deviceTree?.dmaRanges ?? [];
      if (dr.length > 0) {
        driver.push({
          kind: "offset",
          name: "dma-ranges",
          mode: "M2",
          windows: dr.map((r) => ({ cpu: r.cpu, bus: r.bus, size: r.size })),
          why: "dma-direct with bus_dma_region from device-tree dma-ranges",
        });
      } else {
        driver.push({
          kind: "direct",
          mode: "M1",
          why: gm
            ? `${guestCov.why}, but the guest does not translate it (${guestDomain}): dma-direct`
            : `${guestCov.why}: dma-direct`,
        });
      }
    }
  }

  // --- device layers (the host's truth) ---
  const device: DeviceLayerPlan[] = [];
  const be = d.backend.kind;
  const hm = iommuOf(hostM);
  let hostHonours: boolean;
  let honourWhy: string;
  if (d.honoursIommu !== "auto") {
    hostHonours = d.honoursIommu === "yes";
    honourWhy = `honoursIommu = ${d.honoursIommu} (injected host behaviour)`;
  } else if (be === "hardware" || be === "openvmm" || t.machine.vmm === "openvmm") {
    hostHonours = true;
    honourWhy = be === "hardware"
      ? "physical device: the IOMMU translates all of its DMA"
      : "OpenVMM: the emulated SMMU translates all DMA";
  } else if (be === "xen-backend") {
    hostHonours = false;
    honourWhy = "Xen back-end: no vIOMMU in the data path";
  } else {
    const getDmaAs = d.transport === "pci";
    hostHonours = apOffered && getDmaAs;
    honourWhy = !apOffered
      ? "QEMU: iommu_platform=off -> dma_as = address_space_memory (virtio-bus.c)"
      : getDmaAs
      ? "QEMU: iommu_platform=on -> dma_as = the PCI bus IOMMU address space"
      : `QEMU: virtio-${d.transport} has no get_dma_as -> address_space_memory`;
  }
  if (d.bridgeOffset) {
    const dr = t.firmware.deviceTree?.dmaRanges ?? [];
    device.push({
      kind: "bridge-offset",
      windows: dr.map((r) => ({ cpu: r.cpu, bus: r.bus, size: r.size })),
      why: "the host bridge converts bus addresses per dma-ranges",
    });
  }
  if (be === "xen-backend") {
    if (driver[0]?.kind === "grant" || d.backend.grants) {
      device.push({
        kind: "grant-map",
        supported: d.backend.grants,
        why: d.backend.grants ? "back-end maps grant references" : "back-end without grant support",
      });
    } else {device.push({
        kind: "identity",
        name: "xen-backend",
        why: "back-end maps guest frames directly",
      });}
  } else if (
    (be === "vhost-kernel" || be === "vhost-user" || be === "vduse") && apNeg && !d.backend.iotlb
  ) {
    device.push({
      kind: "no-iotlb",
      backend: be,
      why: `${be} with ACCESS_PLATFORM but without device IOTLB support: cannot translate`,
    });
  } else if (hm && hostHonours) {
    const state: GuestDomainState = guestCov.iommu === hm.id
      ? guestDomain
      : g.iommu === "off"
      ? "disabled"
      : hm.kind === "virtio-iommu"
      ? "blocked"
      : (hm.kind === "tce" || hm.kind === "alpha-typhoon" || hm.kind === "sun4u")
      ? "dma"
      : "blocked";
    device.push({
      kind: "iommu",
      iommu: hm.id,
      iommuKind: hm.kind,
      state,
      why: `${honourWhy}${
        (be === "vhost-kernel" || be === "vhost-user") && apNeg ? "; vhost device IOTLB (M9)" : ""
      }${
        hm.kind === "virtio-iommu" && state === "blocked"
          ? hm.bootBypass
            ? "; endpoint never attached, but config.bypass is set at boot: accesses pass untranslated"
            : "; endpoint never attached and config.bypass is clear: every access faults"
          : ""
      }`,
    });
  } else {
    device.push({
      kind: "identity",
      name: be === "hardware"
        ? "physical"
        : be === "qemu" || be === "openvmm"
        ? "address_space_memory"
        : be,
      why: hm ? honourWhy : "no IOMMU in front of the device",
    });
  }
  if (CC_BOUNCE.has(cc) || CC_POOL.has(cc)) {
    device.push({
      kind: "private-filter",
      tech: cc,
      why: `${cc}: the host reaches shared pages only`,
    });
  }

  // --- warnings ---
  if (
    hasFeature(offered, VIRTIO_F_ORDER_PLATFORM) && !hasFeature(negotiated, VIRTIO_F_ORDER_PLATFORM)
  ) {
    warnings.push(
      "ORDER_PLATFORM offered but not negotiated: weak (SMP) barriers; ordering bugs on weakly ordered CPUs",
    );
  }
  if (be === "hardware" && !apOffered) {
    warnings.push(
      "physical virtio hardware without ACCESS_PLATFORM: the spec recommends offering it and ORDER_PLATFORM",
    );
  }
  if (apNeg && (be === "vhost-kernel" || be === "vhost-user") && d.backend.iotlb && !hm) {
    warnings.push(
      "ACCESS_PLATFORM with no vIOMMU: vhost still runs with a device IOTLB (extra MISS/UPDATE traffic)",
    );
  }
  const dl = driver.at(-1);
  if (dl?.kind === "iommu" && dl.lazy) {
    warnings.push(
      "lazy invalidation: unmapped IOVAs stay valid in the IOTLB for up to 256 entries / 10 ms",
    );
  }

  return {
    device: d,
    offered,
    accepted,
    negotiated,
    probe,
    usesDmaApi,
    dmaApiWhy,
    driverLayers: driver,
    deviceLayers: device,
    guestIommu: guestCov.iommu,
    hostIommu: hostM,
    hostHonours,
    // A racy UNMAP against QEMU's UNMAP loop removes a live mapping: an injected driver bug.
    agree: viewsAgree(driver, device) && !(g.splitUnmap && splitUnmapHits(t, driver)),
    warnings,
  };
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

/** Default GPA of the driver's rings: 16 MiB into the first RAM range (see `runLayout`). */
export function defaultRingGpa(t: Topology): U64 {
  return runLayout({ ...t, workload: { ...t.workload, ringGpa: undefined } }).ringGpa;
}
