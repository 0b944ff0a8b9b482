/**
 * The parsed topology types (explicit, so the public API does not depend on zod's inference) and
 * the closed vocabularies a topology file draws from (architectures, feature names, verdicts).
 * The schema that produces them is in `topology.ts`.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";

/** Machine architectures and board models the presets cover. */
export const MACHINE_ARCHES = [
  "x86-q35",
  "x86-pc",
  "ppc64-pseries",
  "sparc64-sun4u",
  "sparc64-sun4v",
  "alpha-clipper",
  "arm64-virt",
  "s390x-ccw",
  "riscv64-virt",
] as const;

/** Feature bits by spec name (device-independent bits, spec §6). */
export const FEATURE_NAMES = [
  "VERSION_1",
  "ACCESS_PLATFORM",
  "ORDER_PLATFORM",
  "RING_PACKED",
  "INDIRECT_DESC",
  "EVENT_IDX",
] as const;
/** A feature name of {@link FEATURE_NAMES}. */
export type FeatureName = (typeof FEATURE_NAMES)[number];

/** End-to-end verdicts of one device's data path. */
export const VERDICTS = [
  "ok",
  "corrupt",
  "fault",
  "refused",
  "probe-fails",
  "stale-window",
] as const;
/** One of {@link VERDICTS}. */
export type Verdict = (typeof VERDICTS)[number];

/** The machine of a {@link Topology}. */
export interface TopologyMachine {
  /** Architecture and board. */
  arch: (typeof MACHINE_ARCHES)[number];
  /** Who implements the platform (`bare-metal` for a real card in a real machine). */
  vmm: "qemu" | "openvmm" | "xen" | "cloud-hypervisor" | "bare-metal";
  /** VMM version, when it matters. */
  vmmVersion?: string;
  /** Confidential-guest technology, `none` for an ordinary guest. */
  confidential: "none" | "sev" | "sev-snp" | "tdx" | "s390-pv" | "power-pef" | "pkvm" | "cca";
}

/** One range of guest-physical memory. */
export interface TopologyMemoryRange {
  /** Label. */
  name?: string;
  /** First GPA. */
  gpa: U64;
  /** Bytes. */
  size: U64;
  /** RAM, firmware ROM, or an MMIO window (accesses succeed; only holes fault). */
  kind: "ram" | "rom" | "mmio";
  /** Confidential-guest private memory. */
  private: boolean;
}

/** Fields every IOMMU kind has. */
export interface TopologyIommuCommon {
  /** Unique id. */
  id: string;
  /** Guest IOVA allocation range (top-down from `end`). */
  iova?: { start: U64; end: U64 };
  /** Translation granule in bytes. */
  pageSize?: 4096 | 8192 | 16384 | 65536;
}

/** One IOMMU of a {@link Topology} (discriminated by `kind`). */
export type TopologyIommu =
  | (TopologyIommuCommon & { kind: "vt-d" | "amd-vi" | "smmuv3" | "sun4u" })
  | (TopologyIommuCommon & {
    kind: "virtio-iommu";
    /** The `devices[]` entry that is the virtio-iommu itself. */
    device?: string;
    /** `config.bypass` at boot. */
    bootBypass: boolean;
    /** RESV_MEM regions (inclusive ends). */
    resvMem: { start: U64; end: U64; subtype: "reserved" | "msi" }[];
    /** Spec revision the device implements. */
    spec: "v0.9" | "v1";
    /** UNMAP that splits a mapping: spec (nothing removed) or QEMU (inner mappings removed). */
    unmapSemantics: "spec" | "qemu";
  })
  | (TopologyIommuCommon & {
    kind: "tce";
    /** 32-bit TCE window size (at bus address 0). */
    window32Size: U64;
    /** A DDW is available. */
    ddw: boolean;
    /** Bus address of the DDW. */
    ddwStart: U64;
  })
  | (TopologyIommuCommon & {
    kind: "alpha-typhoon";
    /** Direct window bus base. */
    directBase: U64;
    /** Direct window size. */
    directSize: U64;
  });

/** What the firmware tells the guest. */
export interface TopologyFirmware {
  /** ACPI DMAR. */
  dmar?: {
    drhd: {
      iommu: string;
      includePciAll: boolean;
      scopes: { type: "endpoint" | "bridge"; bdf: string }[];
    }[];
  };
  /** ACPI IVRS. */
  ivrs?: { ivhd: { iommu: string; selectAll: boolean; devices: string[] }[] };
  /** ACPI IORT root-complex ID mappings (`idCount` = number of IDs - 1). */
  iort?: { mappings: { iommu: string; inputBase: number; idCount: number; outputBase: number }[] };
  /** ACPI VIOT. */
  viot?: { iommu: string; pciRanges: { bdfStart: string; bdfEnd: string }[] };
  /** Device tree. */
  deviceTree?: {
    iommus: { device: string; iommu: string }[];
    iommuMap: { ridBase: number; iommu: string; iommuBase: number; length: number }[];
    dmaRanges: { bus: U64; cpu: U64; size: U64 }[];
  };
}

/** One virtio device of a {@link Topology}. */
export interface TopologyDevice {
  /** Unique id. */
  id: string;
  /** Device type. */
  type: "net" | "blk" | "scsi" | "console" | "rng" | "vsock" | "fs" | "gpu" | "iommu";
  /** Transport. */
  transport: "pci" | "mmio" | "ccw";
  /** PCI address `"bb:dd.f"`. */
  bdf?: string;
  /** On a `bypass_iommu` host bridge. */
  bypassIommuBus: boolean;
  /** Driven through the legacy interface. */
  legacy: boolean;
  /** Who implements the data path. */
  backend: {
    kind: "qemu" | "vhost-kernel" | "vhost-user" | "hardware" | "openvmm" | "xen-backend" | "vduse";
    iotlb: boolean;
    grants: boolean;
  };
  /** Offered feature names. */
  offers: FeatureName[];
  /** The IOMMU really in front of the device (`auto`: derived). */
  behind: string;
  /** Host routes DMA through that IOMMU: `auto` (what the VMM does), or injected. */
  honoursIommu: "auto" | "yes" | "no";
  /** Bus bridge offsets apply (`dma-ranges`). */
  bridgeOffset: boolean;
}

/** The guest policy of a {@link Topology}; see the schema for each field's meaning. */
export interface GuestPolicy {
  /** Guest software. */
  os: "linux" | "other" | "u-boot" | "ipxe" | "edk2";
  /** Kernel or firmware version. */
  version: string;
  /** When the virtio driver uses the DMA API. */
  dmaApi: "linux" | "always" | "never";
  /** Accepts ACCESS_PLATFORM. */
  acceptsAccessPlatform: "auto" | "yes" | "no";
  /** Accepts ORDER_PLATFORM. */
  acceptsOrderPlatform: "auto" | "yes" | "no";
  /** IOMMU default domain type. */
  iommu: "dma-strict" | "dma-lazy" | "passthrough" | "off";
  /** virtio-iommu driver revision, or none. */
  viommuDriver: "none" | "v0.9" | "v1";
  /** IOVA allocator avoids RESV_MEM regions. */
  honoursResvMem: boolean;
  /** A racy UNMAP splits a live mapping. */
  splitUnmap: boolean;
  /** IORT `id_count` interpretation. */
  iortIdCount: "minus-one" | "count";
  /** `swiotlb=force`. */
  forceSwiotlb: boolean;
  /** Per-device restricted-dma-pool. */
  restrictedDmaPool: boolean;
  /** Bounce pool slots (2 KiB each). */
  swiotlbSlots: number;
  /** Restricted virtio memory access enforcement. */
  restrictedMemAccess: "auto" | "enforce" | "off";
  /** Xen grant DMA. */
  xenGrantDma: boolean;
  /** Use the POWER DDW. */
  useDdw: boolean;
}

/** What to run through the rings. */
export interface TopologyWorkload {
  /** Ring layout. */
  layout: "split" | "packed";
  /** Bytes per buffer. */
  bufferBytes: number;
  /** Ring GPA. */
  ringGpa?: U64;
  /** Buffer GPA. */
  bufferGpa?: U64;
}

/** A parsed, validated topology (all defaults filled, addresses exact {@link U64}). */
export interface Topology {
  /** JSON Schema reference. */
  $schema?: string;
  /** Short kebab-case name. */
  name: string;
  /** One line. */
  title: string;
  /** EDGE_CASES.md rows. */
  catalogue: string[];
  /** Where the facts come from. */
  source?: string;
  /** Why the recorded verdict differs from the EDGE_CASES.md outcome column. */
  deviation?: string;
  /** The machine. */
  machine: TopologyMachine;
  /** The guest-physical memory map. */
  memory: TopologyMemoryRange[];
  /** IOMMUs. */
  iommus: TopologyIommu[];
  /** Firmware tables. */
  firmware: TopologyFirmware;
  /** Virtio devices. */
  devices: TopologyDevice[];
  /** Guest policy. */
  guest: GuestPolicy;
  /** Workload. */
  workload: TopologyWorkload;
  /** Recorded verdicts per device id. */
  expect: Record<string, { verdict: Verdict; layer?: string }>;
}

/**
 * The JSON input form of a topology (what a file holds; defaults may be omitted). Validated only
 * by {@link parseTopology}; typed loosely so that JSON imports fit.
 */
export interface TopologyInput {
  /** Short kebab-case name. */
  name: string;
  /** One line. */
  title: string;
  /** EDGE_CASES.md rows. */
  catalogue?: string[];
  /** Why the recorded verdict differs from the catalogue's outcome. */
  deviation?: string;
  /** Recorded verdicts per device id. */
  expect?: Record<string, { verdict: string; layer?: string }>;
  /** Every other field, validated at parse time. */
  [field: string]: unknown;
}
