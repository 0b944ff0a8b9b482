/**
 * The topology file: a zod schema for one machine as a JSON document, and the parser that turns a
 * file into a plain typed {@link Topology} (validation at the edge, ARCHITECTURE.md).
 *
 * A topology records, for one guest:
 * - the **machine** (architecture, VMM, confidential-computing technology);
 * - its **memory** map (RAM, ROM, MMIO windows; private or shared pages);
 * - its **IOMMUs** (VT-d, AMD-Vi, SMMUv3, virtio-iommu, POWER TCE, alpha Typhoon windows, sun4u);
 * - what the **firmware** tells the guest (ACPI DMAR / IVRS / IORT / VIOT, device-tree `iommus`,
 *   `iommu-map` and `dma-ranges`);
 * - its **devices** (virtio-pci / -mmio / -ccw endpoints with requester IDs, their back-ends
 *   such as vhost or vhost-user with or without a device IOTLB, or physical virtio hardware), the
 *   feature bits each one offers and what the host **really** does with its DMA;
 * - the **guest policy**: a Linux-era model of when the virtio driver uses the DMA API
 *   (`vring_use_dma_api`), the IOMMU domain type (strict, lazy, pass-through), forced swiotlb.
 *
 * Facts behind the fields: EDGE_CASES.md (decision table) and DMA_MODES.md (M0..M10).
 *
 * @module
 */

import { z } from "zod";
import { toU64, type U64 } from "../memory/u64.ts";

// ---------------------------------------------------------------------------------------------
// Scalars

const HEX_RE = /^0x[0-9a-fA-F]{1,16}$/;

/** An exact u64 address or size: a JSON integer up to 2^53 - 1 or a `"0x..."` hex string. */
const addr = z
  .union([
    z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER, {
      error: "integers above 2^53 - 1 are not exact in JSON: write a hex string such as " +
        '"0x8000000000000000"',
    }),
    z.string().regex(HEX_RE, {
      error: 'an address is a number or a hex string such as "0x80000000" (at most 16 digits)',
    }),
  ], {
    error: "an address or size is a whole number (at most 2^53 - 1) or a hex string such as " +
      '"0x80000000"',
  })
  .transform((v): U64 => toU64(typeof v === "number" ? v : BigInt(v)));

const BDF_RE = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;

/** A PCI address `"bb:dd.f"` or `"ssss:bb:dd.f"`. */
const bdf = z.string().regex(BDF_RE, {
  error: 'a PCI address is "bus:device.function" in hex, e.g. "00:03.0" (device <= 1f, fn <= 7)',
});

const id = z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, {
  error: 'an id is lower-case letters, digits, ".", "_" or "-", e.g. "vtd0" or "net0"',
});

/** `"major.minor"` version strings such as a Linux kernel `"5.13"` or a QEMU `"6.1"`. */
const version = z.string().regex(/^\d+(\.\d+){0,2}$/, {
  error: 'a version is "major.minor" such as "5.13" or "2023.05"',
});

// ---------------------------------------------------------------------------------------------
// Machine and memory

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

/** The machine: architecture, VMM (or bare metal), confidential-computing technology. */
const machineSchema = z.strictObject({
  /** Architecture and board. */
  arch: z.enum(MACHINE_ARCHES),
  /** Who implements the virtual platform (`bare-metal` for a real card in a real machine). */
  vmm: z.enum(["qemu", "openvmm", "xen", "cloud-hypervisor", "bare-metal"]).default("qemu"),
  /** VMM version when it matters (QEMU 6.1 changed DMAR building). */
  vmmVersion: version.optional(),
  /** Confidential guest technology; `none` for an ordinary guest. */
  confidential: z
    .enum(["none", "sev", "sev-snp", "tdx", "s390-pv", "power-pef", "pkvm", "cca"])
    .default("none"),
});

/** One range of the guest-physical map. */
const memoryRangeSchema = z.strictObject({
  /** Label used in explanations, e.g. `"ram-low"`, `"bios"`. */
  name: z.string().min(1).optional(),
  /** First GPA. */
  gpa: addr,
  /** Size in bytes. */
  size: addr,
  /**
   * `ram`; `rom` (firmware flash: readable, the device's writes land nowhere useful); `mmio`
   * (device registers such as the x86 MSI window). Accesses to any of them succeed; only holes
   * fault.
   */
  kind: z.enum(["ram", "rom", "mmio"]).default("ram"),
  /** Confidential-guest private memory the host cannot access (SEV/TDX private pages). */
  private: z.boolean().default(false),
});

// ---------------------------------------------------------------------------------------------
// IOMMUs

const iovaRange = z.strictObject({
  /** Lowest IOVA the guest's allocator hands out. */
  start: addr,
  /** Highest IOVA + 1; Linux allocates top-down from here (32-bit first for PCI). */
  end: addr,
});

const common = {
  /** Unique id referenced by firmware tables and devices. */
  id,
  /** IOVA allocation range of the guest's DMA domains (default `[0x100000, 0x100000000)`). */
  iova: iovaRange.optional(),
  /** Translation granule in bytes (default 4096; alpha SGMAP 8192). */
  pageSize: z.union([z.literal(4096), z.literal(8192), z.literal(16384), z.literal(65536)])
    .optional(),
};

/** A reserved region a virtio-iommu reports in PROBE (`VIRTIO_IOMMU_RESV_MEM_T_*`). */
const resvMemSchema = z.strictObject({
  start: addr,
  /** Inclusive end, as the spec writes it. */
  end: addr,
  subtype: z.enum(["reserved", "msi"]),
});

const iommuSchema = z.discriminatedUnion("kind", [
  z.strictObject({ ...common, kind: z.literal("vt-d") }),
  z.strictObject({ ...common, kind: z.literal("amd-vi") }),
  z.strictObject({ ...common, kind: z.literal("smmuv3") }),
  z.strictObject({ ...common, kind: z.literal("sun4u") }),
  z.strictObject({
    ...common,
    kind: z.literal("virtio-iommu"),
    /** The `devices[]` entry that is the virtio-iommu itself (a virtio device, ID 23). */
    device: id.optional(),
    /** `config.bypass` at boot (QEMU `boot-bypass`, default true). */
    bootBypass: z.boolean().default(true),
    /** Reserved regions reported by PROBE. */
    resvMem: z.array(resvMemSchema).default([]),
    /** Spec revision the device implements (`v0.9` is the pre-2019 draft layout). */
    spec: z.enum(["v0.9", "v1"]).default("v1"),
    /**
     * UNMAP that splits a mapping: `spec` (RANGE, nothing removed) or `qemu` (mappings entirely
     * inside the range are already removed when RANGE is returned).
     */
    unmapSemantics: z.enum(["spec", "qemu"]).default("spec"),
  }),
  z.strictObject({
    ...common,
    kind: z.literal("tce"),
    /** Default 32-bit DMA window size (QEMU `SPAPR_PCI_DMA32_SIZE`, 1 GiB at bus address 0). */
    window32Size: addr.default(0x4000_0000),
    /** Dynamic DMA window direct-mapping all RAM at `ddwStart` (used when the guest asks). */
    ddw: z.boolean().default(false),
    /** Bus address of the DDW (QEMU `SPAPR_PCI_DMA64_START` = 2^63). */
    ddwStart: addr.default(2n ** 63n),
  }),
  z.strictObject({
    ...common,
    kind: z.literal("alpha-typhoon"),
    /** Direct-mapped window base (CIA: 2 GiB at 2 GiB). */
    directBase: addr.default(0x8000_0000),
    /** Direct-mapped window size (CIA 2 GiB, Titan 1 GiB). */
    directSize: addr.default(0x8000_0000),
  }),
]);

// ---------------------------------------------------------------------------------------------
// Firmware

const dmarScope = z.strictObject({
  /** `endpoint` (device scope type 1) or `bridge` (type 2: the whole bus below). */
  type: z.enum(["endpoint", "bridge"]),
  /** Endpoint address, or for a bridge any address on the secondary bus (`"02:00.0"`). */
  bdf,
});

const firmwareSchema = z.strictObject({
  /** ACPI DMAR (Intel VT-d): DRHD units with INCLUDE_PCI_ALL or device scopes. */
  dmar: z.strictObject({
    drhd: z.array(z.strictObject({
      iommu: id,
      /** DRHD flag bit 0: covers every PCI device of the segment not listed elsewhere. */
      includePciAll: z.boolean(),
      scopes: z.array(dmarScope).default([]),
    })).min(1),
  }).optional(),
  /** ACPI IVRS (AMD-Vi): IVHD blocks with select-all or per-device entries. */
  ivrs: z.strictObject({
    ivhd: z.array(z.strictObject({
      iommu: id,
      selectAll: z.boolean().default(false),
      devices: z.array(bdf).default([]),
    })).min(1),
  }).optional(),
  /** ACPI IORT (Arm): root-complex ID mappings to an SMMU; `idCount` is "number of IDs - 1". */
  iort: z.strictObject({
    mappings: z.array(z.strictObject({
      iommu: id,
      inputBase: z.number().int().min(0).max(0xffff),
      idCount: z.number().int().min(0).max(0xffff),
      outputBase: z.number().int().min(0),
    })).min(1),
  }).optional(),
  /** ACPI VIOT (virtio-iommu): PCI ranges translated by a virtio-iommu. */
  viot: z.strictObject({
    iommu: id,
    pciRanges: z.array(z.strictObject({ bdfStart: bdf, bdfEnd: bdf })).default([]),
  }).optional(),
  /** Device tree. */
  deviceTree: z.strictObject({
    /** Per-master `iommus = <&iommu ...>`: device id -> IOMMU id. */
    iommus: z.array(z.strictObject({ device: id, iommu: id })).default([]),
    /** PCI host `iommu-map = <rid-base &iommu iommu-base length>`. */
    iommuMap: z.array(z.strictObject({
      ridBase: z.number().int().min(0).max(0xffff),
      iommu: id,
      iommuBase: z.number().int().min(0),
      length: z.number().int().min(1).max(0x10000),
    })).default([]),
    /** Bus `dma-ranges` triplets (child bus address, parent CPU address, size). */
    dmaRanges: z.array(z.strictObject({ bus: addr, cpu: addr, size: addr })).default([]),
  }).optional(),
});

// ---------------------------------------------------------------------------------------------
// Devices

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

const deviceSchema = z.strictObject({
  /** Unique id, e.g. `"net0"`. */
  id,
  /** Device type (virtio device ID name). `iommu` is a virtio-iommu. */
  type: z.enum(["net", "blk", "scsi", "console", "rng", "vsock", "fs", "gpu", "iommu"]),
  /** Transport. */
  transport: z.enum(["pci", "mmio", "ccw"]),
  /** PCI address; the requester ID is `bus << 8 | dev << 3 | fn`. Required for `pci`. */
  bdf: bdf.optional(),
  /** PCI host bridge created with `bypass_iommu=on` (QEMU >= 6.1). */
  bypassIommuBus: z.boolean().default(false),
  /** The guest drives the legacy (pre-1.0) interface: 32 feature bits, PFN queue registers. */
  legacy: z.boolean().default(false),
  /** Who implements the device's data path. */
  backend: z.strictObject({
    kind: z.enum([
      "qemu",
      "vhost-kernel",
      "vhost-user",
      "hardware",
      "openvmm",
      "xen-backend",
      "vduse",
    ]),
    /** vhost / vhost-user back-end supports the device IOTLB (`VHOST_F_DEVICE_IOTLB`). */
    iotlb: z.boolean().default(true),
    /** Xen back-end can map grant references (`xen,grant-dma`). */
    grants: z.boolean().default(false),
  }).default({ kind: "qemu", iotlb: true, grants: false }),
  /** Feature bits the device offers (by spec name, without the `VIRTIO_F_` prefix). */
  offers: z.array(z.enum(FEATURE_NAMES)).default(["VERSION_1"]),
  /**
   * The IOMMU that sits in front of this device in the real data path (the host's truth), or
   * `none`. Default: derived from firmware coverage (`auto`).
   */
  behind: z.union([id, z.literal("none"), z.literal("auto")]).default("auto"),
  /**
   * Does the host route this device's DMA through that IOMMU? `auto` = what the VMM does
   * (QEMU: only with `iommu_platform=on`, i.e. ACCESS_PLATFORM offered, on a transport with
   * `get_dma_as`; hardware and OpenVMM: always). `yes`/`no` inject a host behaviour.
   */
  honoursIommu: z.enum(["auto", "yes", "no"]).default("auto"),
  /** Bus bridge offsets the device's addresses pass through (hardware behind `dma-ranges`). */
  bridgeOffset: z.boolean().default(false),
});

// ---------------------------------------------------------------------------------------------
// Guest policy

const guestSchema = z.strictObject({
  /** Guest software driving the devices. */
  os: z.enum(["linux", "other", "u-boot", "ipxe", "edk2"]).default("linux"),
  /** Linux kernel (or firmware) version the policy model follows, e.g. `"6.8"`, `"2023.05"`. */
  version: version.default("6.8"),
  /**
   * When the virtio driver uses the DMA API: `linux` (the era's `vring_use_dma_api`: ACCESS_PLATFORM
   * negotiated or a Xen domain), `always` (a driver that ignores the quirk), `never`.
   */
  dmaApi: z.enum(["linux", "always", "never"]).default("linux"),
  /** Does the driver accept ACCESS_PLATFORM? `auto`: Linux >= 4.8, U-Boot >= 2023.05, iPXE. */
  acceptsAccessPlatform: z.enum(["auto", "yes", "no"]).default("auto"),
  /** Does the driver accept ORDER_PLATFORM? `auto`: Linux >= 4.8. */
  acceptsOrderPlatform: z.enum(["auto", "yes", "no"]).default("auto"),
  /** The guest's IOMMU default domain: strict, lazy (flush queue), pass-through, or no driver. */
  iommu: z.enum(["dma-strict", "dma-lazy", "passthrough", "off"]).default("dma-strict"),
  /** Guest has a virtio-iommu driver (`none` = firmware or a kernel without one). */
  viommuDriver: z.enum(["none", "v0.9", "v1"]).default("v1"),
  /** Guest IOVA allocator honours virtio-iommu RESV_MEM regions (Linux does). */
  honoursResvMem: z.boolean().default(true),
  /** A buggy or racy driver issues an UNMAP that splits a live mapping (virtio-iommu). */
  splitUnmap: z.boolean().default(false),
  /** How the guest's IORT parser reads `id_count`: `minus-one` (correct) or `count` (bug). */
  iortIdCount: z.enum(["minus-one", "count"]).default("minus-one"),
  /** Force every DMA through swiotlb bounce buffers (`swiotlb=force`). */
  forceSwiotlb: z.boolean().default(false),
  /** A per-device restricted-dma-pool (pKVM / CCA) instead of the global swiotlb. */
  restrictedDmaPool: z.boolean().default(false),
  /** Bounce pool size in slots of 2 KiB, at most 1024 (Linux: 64 MiB default; a run needs few). */
  swiotlbSlots: z.number().int().min(1).max(1024).default(512),
  /** Restricted virtio memory access (VERSION_1 + ACCESS_PLATFORM required): `auto` by era. */
  restrictedMemAccess: z.enum(["auto", "enforce", "off"]).default("auto"),
  /** Xen guest uses grant DMA for virtio (`xen,grant-dma`, CONFIG_XEN_VIRTIO_FORCE_GRANT). */
  xenGrantDma: z.boolean().default(false),
  /** Ask POWER firmware for a DDW direct window (instead of the 32-bit TCE window). */
  useDdw: z.boolean().default(false),
});

// ---------------------------------------------------------------------------------------------
// Workload and expectation

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

const workloadSchema = z.strictObject({
  /** Ring layout to run. */
  layout: z.enum(["split", "packed"]).default("split"),
  /** Bytes per buffer (the device-readable part; the writable part is as large). */
  bufferBytes: z.number().int().min(1).max(4 * 1024 * 1024).default(512),
  /** GPA where the driver allocates its rings (default: 16 MiB into the first RAM range). */
  ringGpa: addr.optional(),
  /** GPA where the driver's buffers live (default: 17 MiB into the first RAM range). */
  bufferGpa: addr.optional(),
});

const expectSchema = z.strictObject({
  verdict: z.enum(VERDICTS),
  /** For `fault`: the layer that faults (its name in the explanation, e.g. `"vt-d"`). */
  layer: z.string().optional(),
});

// The topology file schema (zod, internal: parse files with `parseTopology`).
const topologySchema: z.ZodType<Topology> = z.strictObject({
  /** JSON Schema reference for editors. */
  $schema: z.string().optional(),
  /** Short kebab-case name, e.g. `"q35-intel-iommu-quirk"`. */
  name: id,
  /** One line: what this platform is. */
  title: z.string().min(1),
  /** EDGE_CASES.md row(s), e.g. `["E2"]`. */
  catalogue: z.array(z.string().regex(/^E\d+[a-z]?$/)).default([]),
  /** Where the facts come from. */
  source: z.string().optional(),
  /**
   * Why the recorded verdict differs from the EDGE_CASES.md outcome column (a model limit or a
   * deliberate choice); `deno task explain` prints it.
   */
  deviation: z.string().min(1).optional(),
  machine: machineSchema,
  memory: z.array(memoryRangeSchema).min(1, {
    error: 'memory needs at least one range, e.g. [{ "gpa": 0, "size": "0x80000000" }]',
  }),
  iommus: z.array(iommuSchema).default([]),
  firmware: firmwareSchema.default({}),
  devices: z.array(deviceSchema).min(1, { error: "a topology needs at least one device" }),
  guest: guestSchema.default(guestSchema.parse({})),
  workload: workloadSchema.default(workloadSchema.parse({})),
  /** Recorded verdict per device id (presets: what the catalogue says happens). */
  expect: z.record(z.string(), expectSchema).default({}),
}).superRefine((t, ctx) => {
  // zod 4 runs a refinement even when a field already failed, on the raw (untransformed) value:
  // cross-check only a fully parsed topology (field errors come first, cross-field ones next).
  if (ctx.issues.length > 0) return;
  crossCheck(t, ctx);
});

// ---------------------------------------------------------------------------------------------
// The parsed types (explicit, so the public API does not depend on zod's inference)

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

// ---------------------------------------------------------------------------------------------
// Cross-field checks, each with a fix

type Ctx = z.RefinementCtx;

function crossCheck(t: z.output<typeof topologySchemaBase>, ctx: Ctx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  const iommuIds = new Set<string>();
  t.iommus.forEach((m, i) => {
    if (iommuIds.has(m.id)) issue(["iommus", i, "id"], `duplicate IOMMU id "${m.id}": rename one`);
    iommuIds.add(m.id);
    if (m.iova && BigInt(m.iova.end) <= BigInt(m.iova.start)) {
      issue(["iommus", i, "iova"], "iova.end must be above iova.start");
    }
  });
  const devIds = new Set<string>();
  const rids = new Map<string, string>();
  t.devices.forEach((d, i) => {
    if (devIds.has(d.id)) issue(["devices", i, "id"], `duplicate device id "${d.id}": rename one`);
    devIds.add(d.id);
    if (d.transport === "pci" && d.bdf === undefined) {
      issue(["devices", i, "bdf"], 'a pci device needs its PCI address, e.g. "bdf": "00:03.0"');
    }
    if (d.transport !== "pci" && d.bdf !== undefined) {
      issue(["devices", i, "bdf"], `only pci devices have a bdf; remove it or set transport "pci"`);
    }
    if (d.bdf !== undefined) {
      const prev = rids.get(d.bdf);
      if (prev) issue(["devices", i, "bdf"], `PCI address ${d.bdf} is already used by "${prev}"`);
      rids.set(d.bdf, d.id);
    }
    if (d.legacy && d.offers.some((f) => f !== "INDIRECT_DESC" && f !== "EVENT_IDX")) {
      issue(
        ["devices", i, "offers"],
        "a legacy interface has only 32 feature bits: VERSION_1, ACCESS_PLATFORM (33) and the " +
          'bits above 32 cannot be offered; remove them or set "legacy": false',
      );
    }
    if (d.transport === "ccw" && t.machine.arch !== "s390x-ccw") {
      issue(["devices", i, "transport"], 'virtio-ccw exists only on "s390x-ccw" machines');
    }
    if (d.behind !== "auto" && d.behind !== "none" && !iommuIds.has(d.behind)) {
      issue(["devices", i, "behind"], `no IOMMU "${d.behind}" in iommus[]; add it or use "auto"`);
    }
  });
  const refIommu = (path: (string | number)[], ref: string) => {
    if (!iommuIds.has(ref)) {
      issue(path, `no IOMMU "${ref}" in iommus[]; declare it there (ids: ${[...iommuIds]})`);
    }
  };
  t.firmware.dmar?.drhd.forEach((d, i) =>
    refIommu(["firmware", "dmar", "drhd", i, "iommu"], d.iommu)
  );
  t.firmware.ivrs?.ivhd.forEach((d, i) =>
    refIommu(["firmware", "ivrs", "ivhd", i, "iommu"], d.iommu)
  );
  t.firmware.iort?.mappings.forEach((m, i) =>
    refIommu(["firmware", "iort", "mappings", i, "iommu"], m.iommu)
  );
  if (t.firmware.viot) refIommu(["firmware", "viot", "iommu"], t.firmware.viot.iommu);
  t.firmware.deviceTree?.iommus.forEach((m, i) => {
    refIommu(["firmware", "deviceTree", "iommus", i, "iommu"], m.iommu);
    if (!devIds.has(m.device)) {
      issue(["firmware", "deviceTree", "iommus", i, "device"], `no device "${m.device}"`);
    }
  });
  t.firmware.deviceTree?.iommuMap.forEach((m, i) =>
    refIommu(["firmware", "deviceTree", "iommuMap", i, "iommu"], m.iommu)
  );
  t.iommus.forEach((m, i) => {
    if (m.kind === "virtio-iommu" && m.device !== undefined) {
      const d = t.devices.find((x) => x.id === m.device);
      if (!d) issue(["iommus", i, "device"], `no device "${m.device}" in devices[]`);
      else if (d.type !== "iommu") {
        issue(["iommus", i, "device"], `device "${m.device}" must have "type": "iommu"`);
      }
    }
  });
  for (const k of Object.keys(t.expect)) {
    if (!devIds.has(k)) {
      issue(["expect", k], `expect names device "${k}" which is not in devices[]`);
    }
  }
  t.memory.forEach((r, i) => {
    const g = BigInt(r.gpa), s = BigInt(r.size);
    if (g % 4096n !== 0n || s % 4096n !== 0n || s === 0n) {
      issue(["memory", i], "gpa and size must be non-zero multiples of 4096 (whole pages)");
    }
    if (g + s > 2n ** 52n) issue(["memory", i], "memory ends above 2^52 (52 physical bits)");
    t.memory.forEach((o, j) => {
      if (j <= i) return;
      const og = BigInt(o.gpa), os = BigInt(o.size);
      if (g < og + os && og < g + s) {
        issue(["memory", j], `overlaps memory[${i}]${r.name ? ` (${r.name})` : ""}`);
      }
    });
  });
  // The run's own memory must be RAM (each piece inside one RAM range).
  const L = runLayout(t);
  const need: [string, number, number][] = [
    ["rings", L.ringGpa, RUN_RING_BYTES],
    ["buffers", L.bufferGpa, 2 * Math.ceil(t.workload.bufferBytes / 4096) * 4096],
    ["bounce pool", L.poolGpa, t.guest.swiotlbSlots * 2048],
    ["virtio-iommu staging", L.stagingGpa, 0x4000],
  ];
  for (const [what, gpa, len] of need) {
    const inRam = t.memory.some((m) =>
      m.kind === "ram" && gpa >= Number(m.gpa) && gpa + len <= Number(m.gpa) + Number(m.size)
    );
    if (!inRam || gpa % 4096 !== 0) {
      issue(
        ["workload"],
        `the run puts the ${what} at 0x${gpa.toString(16)} (+0x${len.toString(16)}), which is ` +
          `${gpa % 4096 ? "not page-aligned" : "not inside one RAM range"}: give the first RAM ` +
          "range at least 34 MiB, or set workload.ringGpa / workload.bufferGpa (page-aligned) " +
          "inside RAM (the pool goes 16 MiB after the rings)",
      );
    }
  }
}

// The same object without the refinement, for typing `crossCheck`.
const topologySchemaBase = z.strictObject({
  name: id,
  title: z.string(),
  catalogue: z.array(z.string()),
  machine: machineSchema,
  memory: z.array(memoryRangeSchema),
  iommus: z.array(iommuSchema),
  firmware: firmwareSchema,
  devices: z.array(deviceSchema),
  guest: guestSchema,
  workload: workloadSchema,
  expect: z.record(z.string(), expectSchema),
});

// ---------------------------------------------------------------------------------------------
// Where a run puts things

/** Guest-physical placement of what a resolution run uses (see {@link runLayout}). */
export interface RunLayout {
  /** The driver's ring memory (64 KiB reserved). */
  ringGpa: number;
  /** The driver's buffers: the device-readable one, then the device-writable one. */
  bufferGpa: number;
  /** The swiotlb / restricted-dma-pool bounce pool (shared memory). */
  poolGpa: number;
  /** The virtio-iommu driver's request staging area (16 KiB). */
  stagingGpa: number;
}

/** Bytes reserved for the rings at {@link RunLayout.ringGpa}. */
export const RUN_RING_BYTES = 64 * 1024;

/**
 * Where a run places rings, buffers, the bounce pool and the virtio-iommu staging area: rings at
 * `workload.ringGpa` (default 16 MiB into the first RAM range), buffers at `workload.bufferGpa`
 * (default 1 MiB after the rings), the pool 16 MiB after the rings, staging 8 MiB after them.
 */
export function runLayout(
  t: Pick<Topology, "memory" | "workload">,
): RunLayout {
  const ram = t.memory.find((m) => m.kind === "ram") ?? t.memory[0];
  const ringGpa = Number(t.workload.ringGpa ?? Number(ram.gpa) + 16 * 1024 * 1024);
  const bufferGpa = Number(t.workload.bufferGpa ?? ringGpa + 1024 * 1024);
  return {
    ringGpa,
    bufferGpa,
    poolGpa: ringGpa + 16 * 1024 * 1024,
    stagingGpa: ringGpa + 8 * 1024 * 1024,
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing with readable errors

/** A topology file that does not validate: every issue with its field path and a fix. */
export class TopologyError extends Error {
  /** Stable error code, `TOPOLOGY_INVALID`. */
  readonly code = "TOPOLOGY_INVALID" as const;
  /** The file (or preset) name. */
  readonly file: string;
  /** One line per issue: `path: message (hint)`. */
  readonly issues: readonly string[];
  /**
   * Creates the error from readable issue lines.
   * @param file file or preset name.
   * @param issues one readable line per issue.
   * @param pretty the zod pretty-printed report.
   */
  constructor(file: string, issues: readonly string[], pretty: string) {
    super(`${file}: invalid topology\n${pretty}`);
    this.name = "TopologyError";
    this.file = file;
    this.issues = issues;
  }
}

/** Extra hints keyed by the last path element, appended to zod's own message. */
const HINTS: Record<string, string> = {
  arch: `one of ${MACHINE_ARCHES.join(", ")}`,
  kind: "see docs/topology.schema.json for the allowed kinds",
  offers: `feature names: ${FEATURE_NAMES.join(", ")}`,
  verdict: `one of ${VERDICTS.join(", ")}`,
  confidential: "none, sev, sev-snp, tdx, s390-pv, power-pef, pkvm or cca",
};

/**
 * Validates a parsed JSON value as a topology.
 * @param json the value (e.g. `JSON.parse` of a file).
 * @param file name used in error messages.
 * @returns the typed topology, defaults filled.
 * @throws TopologyError naming each bad field and how to fix it.
 */
export function parseTopology(json: unknown, file = "<topology>"): Topology {
  const r = topologySchema.safeParse(json);
  if (r.success) return r.data;
  const lines = r.error.issues.map((iss) => {
    const path = iss.path.map(String).join(".") || "(root)";
    const last = String([...iss.path].reverse().find((k) => typeof k === "string") ?? "");
    let hint = HINTS[last] ?? "";
    if (iss.code === "unrecognized_keys") hint = "remove it, or check its spelling";
    if (iss.code === "invalid_type" && iss.input === undefined) hint = "this field is required";
    return `${path}: ${iss.message}${hint ? ` (${hint})` : ""}`;
  });
  const fixes = lines.filter((l) => l.endsWith(")"));
  const pretty = z.prettifyError(r.error) +
    (fixes.length ? "\nfixes:\n  " + fixes.join("\n  ") : "");
  throw new TopologyError(file, lines, pretty);
}

/**
 * The JSON Schema of a topology file's input form, for editors (`docs/topology.schema.json`).
 * @returns a JSON Schema object (draft 2020-12).
 */
export function topologyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(topologySchema, { io: "input", unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
}

/**
 * The 16-bit PCI requester ID of `"bb:dd.f"` (`bus << 8 | dev << 3 | fn`), or `undefined` for a
 * non-PCI device.
 */
export function requesterId(bdfText: string | undefined): number | undefined {
  if (bdfText === undefined) return undefined;
  const m = BDF_RE.exec(bdfText);
  if (!m) return undefined;
  return (parseInt(m[2], 16) << 8) | (parseInt(m[3], 16) << 3) | parseInt(m[4], 10);
}
