/**
 * Fuzz target `topology`: random but valid platform topologies (machine families with their
 * IOMMUs, firmware tables, devices, back-ends, host behaviour and Linux-era guest policies),
 * resolved end to end by `resolveTopology`, which traces one DMA through the two views and runs
 * buffers through the rings.
 *
 * Oracles:
 * - `prediction-mismatch`: the verdict predicted from the driver's and the device's views (the
 *   trace) differs from what the rings showed (verdict or layer);
 * - `consistent-not-intact`: the plan says the views agree, yet the data did not arrive intact;
 * - `reference-mismatch`: an independent reference (`fuzz/support/topology_reference.ts`, an
 *   abstract interpreter of each planned layer's decision, written apart from `src/platform`)
 *   disagrees with the ring run on whether the data arrives intact, or with the plan's `agree`;
 * - `layer-list`: the assembled driver API / device space do not have one layer per planned layer
 *   (the bounce layer and the private-memory filter named as planned).
 *
 * Every input is a topology JSON document (`encode` is the identity, `decode` validates it), so a
 * corpus entry replays with `deno task explain <entry.json>`. {@link findDisagreements} collects
 * one topology per kind of disagreement (driver mode / device mode / verdict / layer).
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import { layerListMismatch, referenceVerdict } from "../support/topology_reference.ts";
import {
  type DevicePlan,
  type DeviceResolution,
  parseTopology,
  planTopology,
  resolveDevice,
  resolveTopology,
  type TopologyInput,
} from "../../src/mod.ts";

type J = Record<string, unknown>;

const Q35_MEM = [
  { name: "ram-low", gpa: 0, size: "0x80000000" },
  { name: "bios", gpa: "0xfffc0000", size: "0x40000", kind: "rom" },
  { name: "ram-high", gpa: "0x100000000", size: "0x80000000" },
];
const ARM_MEM = [
  { name: "ram", gpa: "0x40000000", size: "0x80000000" },
  { name: "ram-high", gpa: "0x100000000", size: "0x80000000" },
];
const LOW4G = [{ name: "ram", gpa: 0, size: "0x100000000" }];

const withPrivate = (mem: J[], on: boolean): J[] =>
  mem.map((r) => (on && (r.kind ?? "ram") === "ram" ? { ...r, private: true } : r));

const versions = fc.constantFrom("4.4", "4.8", "5.3", "5.10", "5.13", "5.15", "5.19", "6.8");

/** One device's knobs (the family decides transport and back-end choices). */
const deviceKnobs = fc.record({
  ap: fc.boolean(),
  order: fc.boolean(),
  v1: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, {
    weight: 1,
    arbitrary: fc.constant(false),
  }),
  legacy: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
  backend: fc.constantFrom("qemu", "qemu", "vhost-kernel", "vhost-user", "hardware"),
  iotlb: fc.boolean(),
  honours: fc.constantFrom("auto", "auto", "auto", "auto", "yes", "no"),
  bypassBus: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
}, { noNullPrototype: true });

const guestKnobs = fc.record({
  version: versions,
  dmaApi: fc.constantFrom("linux", "linux", "linux", "always", "never"),
  iommu: fc.constantFrom("dma-strict", "dma-lazy", "passthrough", "off"),
  viommuDriver: fc.constantFrom("v1", "v1", "none", "v0.9"),
  honoursResvMem: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, {
    weight: 1,
    arbitrary: fc.constant(false),
  }),
  splitUnmap: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
  iortIdCount: fc.constantFrom("minus-one", "minus-one", "count"),
  forceSwiotlb: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
  useDdw: fc.boolean(),
  xenGrantDma: fc.boolean(),
}, { noNullPrototype: true });

const common = fc.record({
  family: fc.constantFrom(
    "x86",
    "x86",
    "arm64",
    "arm64",
    "pseries",
    "alpha",
    "sparc",
    "s390",
    "xen",
  ),
  iommuPick: fc.nat(3),
  cc: fc.nat(3),
  vmmPick: fc.nat(2),
  fwAll: fc.boolean(),
  fwScoped: fc.boolean(),
  idCount: fc.constantFrom(0xffff, 0x17, 0x18),
  dmaRanges: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
  bootBypass: fc.boolean(),
  unmapQemu: fc.boolean(),
  ddw: fc.boolean(),
  devices: fc.array(deviceKnobs, { minLength: 1, maxLength: 2 }),
  guest: guestKnobs,
  bufferBytes: fc.constantFrom(64, 512, 4096, 65536, 300000),
  layout: fc.constantFrom("split", "split", "packed"),
}, { noNullPrototype: true });

type Knobs = typeof common extends fc.Arbitrary<infer K> ? K : never;

/** A virtio-iommu on PCI at `bdf`, its device, and its VIOT table when the firmware covers all. */
function addVirtioIommu(k: Knobs, bdf: string, iommus: J[], devices: J[], firmware: J): void {
  iommus.push({
    id: "viommu0",
    kind: "virtio-iommu",
    device: "viommu-pci",
    bootBypass: k.bootBypass,
    unmapSemantics: k.unmapQemu ? "qemu" : "spec",
  });
  devices.push({
    id: "viommu-pci",
    type: "iommu",
    transport: "pci",
    bdf,
    offers: ["VERSION_1"],
  });
  if (k.fwAll) {
    firmware.viot = {
      iommu: "viommu0",
      pciRanges: [{ bdfStart: "00:00.0", bdfEnd: "00:1f.7" }],
    };
  }
}

/** Device `i` of the topology from its knobs, on the family's transport and backend. */
function fuzzedDevice(
  k: Knobs,
  d: Knobs["devices"][number],
  i: number,
  transport: string,
  vmm: string,
): J {
  const offers = d.legacy ? [] : [
    ...(d.v1 ? ["VERSION_1"] : []),
    ...(d.ap ? ["ACCESS_PLATFORM"] : []),
    ...(d.order ? ["ORDER_PLATFORM"] : []),
  ];
  let backend: J = { kind: d.backend, iotlb: d.iotlb };
  if (k.family === "xen") backend = { kind: "xen-backend", grants: d.iotlb };
  else if (vmm === "openvmm") backend = { kind: "openvmm" };
  else if (vmm === "bare-metal") backend = { kind: "hardware" };
  const dev: J = {
    id: `dev${i}`,
    type: i === 0 ? "net" : "blk",
    transport: k.family === "arm64" && k.dmaRanges && i === 1 ? "mmio" : transport,
    legacy: d.legacy,
    offers,
    backend,
    honoursIommu: d.honours,
  };
  if (dev.transport === "pci") dev.bdf = `00:0${3 + i}.0`;
  if (d.bypassBus && dev.transport === "pci") {
    dev.bdf = `8${i}:00.0`;
    dev.bypassIommuBus = true;
  }
  if (k.family === "arm64" && k.dmaRanges && backend.kind === "hardware") dev.bridgeOffset = true;
  return dev;
}

/** Builds a valid topology JSON document from drawn knobs. */
export function topologyFromKnobs(k: Knobs): TopologyInput {
  const t: J = { name: "fuzzed", title: `fuzzed ${k.family} topology` };
  const iommus: J[] = [];
  const firmware: J = {};
  const devices: J[] = [];
  let transport = "pci";
  let memory: J[] = Q35_MEM;
  let confidential = "none";
  let vmm = "qemu";
  let arch = "x86-q35";
  const guest: J = { ...k.guest, swiotlbSlots: 512 };
  switch (k.family) {
    case "x86": {
      confidential = ["none", "none", "sev", "tdx"][k.cc];
      vmm = ["qemu", "qemu", "bare-metal"][k.vmmPick];
      const kind = ["none", "vt-d", "amd-vi", "virtio-iommu"][k.iommuPick];
      if (kind === "vt-d") {
        iommus.push({ id: "vtd0", kind });
        firmware.dmar = {
          drhd: [{
            iommu: "vtd0",
            includePciAll: k.fwAll,
            scopes: k.fwScoped ? [{ type: "bridge", bdf: "00:00.0" }] : [],
          }],
        };
      } else if (kind === "amd-vi") {
        iommus.push({ id: "amdvi0", kind });
        firmware.ivrs = {
          ivhd: [{ iommu: "amdvi0", selectAll: k.fwAll, devices: k.fwScoped ? ["00:03.0"] : [] }],
        };
      } else if (kind === "virtio-iommu") {
        addVirtioIommu(k, "00:02.0", iommus, devices, firmware);
      }
      break;
    }
    case "arm64": {
      arch = "arm64-virt";
      memory = ARM_MEM;
      confidential = ["none", "none", "pkvm", "cca"][k.cc];
      vmm = ["qemu", "openvmm", "bare-metal"][k.vmmPick];
      const kind = ["none", "smmuv3", "smmuv3", "virtio-iommu"][k.iommuPick];
      if (kind === "smmuv3") {
        iommus.push({ id: "smmu0", kind });
        if (k.fwAll) {
          firmware.iort = {
            mappings: [{ iommu: "smmu0", inputBase: 0, idCount: k.idCount, outputBase: 0 }],
          };
        } else if (k.fwScoped) {
          firmware.deviceTree = {
            iommuMap: [{ ridBase: 0, iommu: "smmu0", iommuBase: 0, length: 0x100 }],
          };
        }
      } else if (kind === "virtio-iommu") {
        addVirtioIommu(k, "00:01.0", iommus, devices, firmware);
      }
      if (k.dmaRanges) {
        firmware.deviceTree = {
          ...(firmware.deviceTree as J ?? {}),
          dmaRanges: [{ bus: 0, cpu: "0x40000000", size: "0x80000000" }],
        };
      }
      break;
    }
    case "pseries":
      arch = "ppc64-pseries";
      memory = LOW4G;
      confidential = ["none", "none", "none", "power-pef"][k.cc];
      iommus.push({ id: "tce0", kind: "tce", ddw: k.ddw });
      break;
    case "alpha":
      arch = "alpha-clipper";
      memory = LOW4G;
      iommus.push({ id: "typhoon0", kind: "alpha-typhoon" });
      break;
    case "sparc":
      arch = "sparc64-sun4u";
      memory = [{ name: "ram", gpa: 0, size: "0x40000000" }];
      iommus.push({ id: "iommu0", kind: "sun4u" });
      break;
    case "s390":
      arch = "s390x-ccw";
      memory = [{ name: "ram", gpa: 0, size: "0x80000000" }];
      confidential = ["none", "none", "s390-pv", "s390-pv"][k.cc];
      transport = "ccw";
      break;
    case "xen":
      arch = "x86-pc";
      vmm = "xen";
      break;
  }
  k.devices.forEach((d, i) => devices.push(fuzzedDevice(k, d, i, transport, vmm)));
  return {
    ...t,
    name: "fuzzed",
    title: `fuzzed ${k.family} topology`,
    machine: { arch, vmm, confidential },
    memory: withPrivate(memory, confidential !== "none"),
    iommus,
    firmware,
    devices,
    guest,
    workload: { bufferBytes: k.bufferBytes, layout: k.layout },
  } as TopologyInput;
}

/** The kind of disagreement a resolved device shows (or `agree` when the data is intact). */
export function disagreementKind(d: DeviceResolution): string {
  const p = d.plan;
  if (p.probe.status !== "ok") return `${p.probe.status}`;
  const drv = p.driverLayers.map((l) => l.kind).join("+");
  const dev = p.deviceLayers.map((l) => l.kind === "iommu" ? `iommu(${l.state})` : l.kind).join(
    "+",
  );
  const layer = (d.observed.layer ?? "").replace(/:ep\d+$/, "");
  return `${drv} -> ${dev}: ${d.observed.verdict}${layer ? `@${layer}` : ""}`;
}

const RESOURCE_LIMITS = new Set(["too-large", "pool-exhausted", "iova-exhausted"]);

type PlanHook = (p: DevicePlan) => DevicePlan;

function check(input: TopologyInput, hook: PlanHook | null = null): void {
  const t = parseTopology(input, "fuzzed topology");
  for (const plan of planTopology(t)) {
    const d = resolveDevice(t, hook ? hook(plan) : plan);
    if (d.predicted.verdict !== d.observed.verdict || d.predicted.layer !== d.observed.layer) {
      throw new OracleFailure(
        "prediction-mismatch",
        `${d.id}: the views predict ${d.predicted.verdict}@${d.predicted.layer} ` +
          `(${d.predicted.detail}) but the rings show ${d.observed.verdict}@${d.observed.layer} ` +
          `(${d.observed.detail})`,
      );
    }
    // A consistent topology moves data intact, unless the DMA API runs out of a resource
    // (a segment above the bounce limit, an exhausted pool or IOVA space): not a disagreement.
    const intact = d.observed.verdict === "ok" || d.observed.verdict === "stale-window" ||
      RESOURCE_LIMITS.has(d.observed.reason ?? "");
    if (d.plan.probe.status === "ok" && d.plan.agree && !intact) {
      throw new OracleFailure(
        "consistent-not-intact",
        `${d.id}: driver ${d.driverApi} and device ${d.deviceSpace} agree, yet ` +
          `${d.observed.verdict}@${d.observed.layer}: ${d.observed.detail}`,
      );
    }
    if (plan.probe.status === "ok") {
      const ref = referenceVerdict(t, plan);
      // A map refused for lack of a resource (too large, pool or IOVA space exhausted) moved no
      // data: the rings then say nothing about the views.
      const limited = RESOURCE_LIMITS.has(d.observed.reason ?? "");
      const arrived = d.observed.verdict === "ok" || d.observed.verdict === "stale-window";
      if ((!limited && ref.intact !== arrived) || ref.intact !== plan.agree) {
        throw new OracleFailure(
          "reference-mismatch",
          `${d.id}: the reference says the data ${
            ref.intact ? "arrives intact" : `goes wrong at ${ref.wrongAt}`
          }, ` +
            `the plan says the views ${plan.agree ? "agree" : "disagree"}, the rings show ` +
            `${d.observed.verdict}@${d.observed.layer} (driver ${
              plan.driverLayers.map((l) => l.kind).join(" > ")
            }, device ${
              plan.deviceLayers.map((l) => l.kind === "iommu" ? `iommu(${l.state})` : l.kind).join(
                " > ",
              )
            })`,
        );
      }
      const lm = layerListMismatch(plan, d.driverApi ?? "", d.deviceSpace ?? "");
      if (lm !== null) throw new OracleFailure("layer-list", `${d.id}: ${lm}`);
    }
  }
}

/**
 * Planted bug (test-only): the host silently ignores every IOMMU (the device dereferences bus
 * addresses as GPAs) while the plan still claims the views agree.
 */
const ignoreIommu: PlanHook = (p) => ({
  ...p,
  deviceLayers: p.deviceLayers.map((l) =>
    l.kind === "iommu" && l.state === "dma"
      ? { kind: "identity", name: "planted-ignores-iommu", why: "planted bug" }
      : l
  ),
});

/** Planted bug (test-only): the assembly builds a blocked IOMMU domain as pass-through. */
const blockedAsIdentity: PlanHook = (p) => ({
  ...p,
  deviceLayers: p.deviceLayers.map((l) =>
    l.kind === "iommu" && l.state === "blocked" ? { ...l, state: "identity" as const } : l
  ),
});

/** Planted bug (test-only): the assembly forgets the bounce layer the plan asks for. */
const dropBounce: PlanHook = (p) => ({
  ...p,
  driverLayers: p.driverLayers.length > 1
    ? p.driverLayers.filter((l) => l.kind !== "bounce")
    : p.driverLayers,
});

const PLANTED: Record<string, PlanHook> = {
  "device-ignores-iommu": ignoreIommu,
  "assembly-blocked-as-identity": blockedAsIdentity,
  "assembly-drops-bounce": dropBounce,
};

function makeTarget(hook: PlanHook | null): FuzzTarget<TopologyInput> {
  return {
    name: "topology",
    description:
      "random valid platform topologies: views' prediction == ring run; agreeing views move data intact",
    arbitrary: () => common.map(topologyFromKnobs),
    run: (input) => check(input, hook),
    encode: (input) => input,
    decode: (json) => {
      parseTopology(json, "corpus entry");
      return json as TopologyInput;
    },
    describe: (input) => JSON.stringify(input, null, 2),
    plantedFaults: Object.keys(PLANTED),
    withPlantedFault: (fault) => {
      const hook = PLANTED[fault];
      if (hook === undefined) throw new RangeError(`unknown planted fault ${fault}`);
      return makeTarget(hook);
    },
  };
}

/** The `topology` fuzz target (see the module documentation). */
export const topologyTarget: FuzzTarget<TopologyInput> = makeTarget(null);

/**
 * Draws `runs` topologies from a fixed seed and keeps the first topology of each kind of
 * disagreement ({@link disagreementKind}), for writing as replayable counterexamples.
 * @returns kind -> topology JSON (named `disagreement-<n>`).
 */
export function findDisagreements(seed: number, runs: number): Map<string, TopologyInput> {
  const found = new Map<string, TopologyInput>();
  const samples = fc.sample(topologyTarget.arbitrary(), { seed, numRuns: runs });
  for (const input of samples) {
    const r = resolveTopology(parseTopology(input, "sample"));
    for (const d of r.devices) {
      const kind = disagreementKind(d);
      if (d.observed.verdict === "ok" || found.has(kind)) continue;
      found.set(kind, {
        ...input,
        name: `disagreement-${found.size + 1}`,
        title: kind,
        expect: {
          [d.id]: {
            verdict: d.observed.verdict,
            ...(d.observed.layer ? { layer: d.observed.layer } : {}),
          },
        },
      });
    }
  }
  return found;
}
