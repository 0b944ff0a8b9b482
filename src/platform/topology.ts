/**
 * The topology file: a zod schema for one machine as a JSON document, and the parser that turns a
 * file into a plain typed {@link Topology} (validation at the edge, ARCHITECTURE.md). The types
 * live in `topology_types.ts`, the cross-field checks in `topology_checks.ts`, the run layout in
 * `topology_layout.ts`; the folder face exports all four.
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

import { closest, distance } from "fastest-levenshtein";
import { z } from "zod";
import { toU64, type U64 } from "../memory/u64.ts";
import { crossCheckTopology } from "./topology_checks.ts";
import { BDF_RE } from "./topology_layout.ts";
import { FEATURE_NAMES, MACHINE_ARCHES, type Topology, VERDICTS } from "./topology_types.ts";

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
  crossCheckTopology(t, ctx);
});

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
   * @param pretty the issues as one line (the CLI prints exactly one line).
   */
  constructor(file: string, issues: readonly string[], pretty: string) {
    super(`${file}: invalid topology: ${pretty}`);
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
  const r = topologySchema.safeParse(json, { reportInput: true });
  if (r.success) return r.data;
  const lines = r.error.issues.map((iss) => {
    const path = iss.path.map((k, i) =>
      typeof k === "number" ? `[${k}]` : `${i === 0 ? "" : "."}${String(k)}`
    ).join("") || "(root)";
    const last = String([...iss.path].reverse().find((k) => typeof k === "string") ?? "");
    let hint = HINTS[last] ?? "";
    const input = (iss as { input?: unknown }).input;
    if (iss.code === "unrecognized_keys") {
      const guesses = iss.keys.map((k) => {
        const g = didYouMean(k, knownFieldNames());
        return g === undefined ? `"${k}"` : `"${k}" (did you mean "${g}"?)`;
      });
      hint = `remove ${guesses.join(", ")}, or check the spelling`;
    } else if (iss.code === "invalid_type" && input === undefined) {
      hint = `this field is required${hint ? `; ${hint}` : ""}`;
    } else if (iss.code === "invalid_value" && typeof input === "string") {
      const g = didYouMean(input, iss.values.filter((v): v is string => typeof v === "string"));
      if (g !== undefined) hint = `did you mean "${g}"?`;
    }
    return `${path}: ${iss.message}${hint ? ` (${hint})` : ""}`;
  });
  throw new TopologyError(file, lines, lines.join("; "));
}

let fieldNames: string[] | undefined;
/** Every property name of the topology schema (for did-you-mean on unknown keys). */
function knownFieldNames(): string[] {
  if (fieldNames !== undefined) return fieldNames;
  const names = new Set<string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (typeof v !== "object" || v === null) return;
    const o = v as Record<string, unknown>;
    if (typeof o.properties === "object" && o.properties !== null) {
      for (const k of Object.keys(o.properties)) names.add(k);
    }
    for (const x of Object.values(o)) walk(x);
  };
  walk(topologyJsonSchema());
  return fieldNames = [...names];
}

/**
 * The candidate closest to `word` by edit distance, when close enough to be a typo (at most a
 * third of its length, at least 2); undefined otherwise.
 * @param word the mistyped word.
 * @param candidates the valid words.
 * @returns the suggestion, or undefined.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  if (candidates.length === 0) return undefined;
  const best = closest(word, [...candidates]);
  return distance(word, best) <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
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
