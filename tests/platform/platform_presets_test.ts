import { assert, assertEquals } from "@std/assert";
import {
  explainText,
  parseTopology,
  PRESET_NAMES,
  PRESETS,
  resolveTopology,
  type Verdict,
  VERDICTS,
} from "../../src/mod.ts";

// Every row of EDGE_CASES.md (E1..E37) has at least one preset.
Deno.test("presets: every EDGE_CASES.md row E1..E37 has a preset", () => {
  const rows = new Set(PRESET_NAMES.flatMap((n) => (PRESETS[n].catalogue ?? []) as string[]));
  for (let i = 1; i <= 37; i++) assert(rows.has(`E${i}`), `no preset for E${i}`);
});

for (const name of PRESET_NAMES) {
  Deno.test(`preset ${name}: resolves to its recorded verdict by running buffers`, () => {
    const t = parseTopology(PRESETS[name], name);
    assertEquals(t.name, name, "a preset's name is its file name");
    assert(Object.keys(t.expect).length > 0, "a preset records at least one verdict");
    const r = resolveTopology(t);
    for (const d of r.devices) {
      // The views alone predict what the rings show.
      assertEquals(
        { verdict: d.predicted.verdict, layer: d.predicted.layer },
        { verdict: d.observed.verdict, layer: d.observed.layer },
        `${d.id}: prediction vs rings\n${explainText(r)}`,
      );
      const e = t.expect[d.id];
      if (!e) continue;
      assertEquals(d.observed.verdict, e.verdict, `${d.id}: ${d.observed.detail}`);
      if (e.layer !== undefined) assertEquals(d.observed.layer, e.layer, `${d.id}: faulting layer`);
    }
  });
}

Deno.test("presets: the recorded verdicts cover every verdict kind", () => {
  const seen = new Set<Verdict>();
  for (const n of PRESET_NAMES) {
    const t = parseTopology(PRESETS[n], n);
    for (const e of Object.values(t.expect)) seen.add(e.verdict);
  }
  assertEquals([...seen].sort(), [...VERDICTS].sort());
});

Deno.test("explain: names the layers and where the views part (E3)", () => {
  const r = resolveTopology(parseTopology(PRESETS["q35-intel-iommu-driver-ignores-quirk"]));
  const text = explainText(r);
  assert(text.includes("vt-d-strict"), text);
  assert(text.includes("address_space_memory"), text);
  assert(/views part at: +the device dereferences 0x00000000fff/.test(text), text);
  assert(text.includes("CORRUPT"), text);
});

Deno.test("E35 vs E4: only lazy invalidation leaves a use-after-unmap window", () => {
  const lazy = resolveTopology(parseTopology(PRESETS["q35-intel-iommu-lazy-stale-window"]));
  const strict = resolveTopology(parseTopology(PRESETS["q35-intel-iommu-platform-strict"]));
  assertEquals(lazy.devices[0].observed.verdict, "stale-window");
  assertEquals(strict.devices[0].observed.verdict, "ok");
});

Deno.test("E10 vs E11: a confidential guest must bounce through shared pages", () => {
  const quirk = resolveTopology(parseTopology(PRESETS["sev-guest-pre-enforcement-quirk"]));
  const bounce = resolveTopology(parseTopology(PRESETS["sev-guest-swiotlb"]));
  assertEquals(quirk.devices[0].observed.layer, "sev");
  assertEquals(bounce.devices[0].driverApi, "swiotlb > dma-direct");
  assertEquals(bounce.devices[0].observed.verdict, "ok");
});

Deno.test("E11: an exhausted bounce pool is a mapping error, not corruption", () => {
  const r = resolveTopology(parseTopology(PRESETS["sev-guest-swiotlb-pool-exhausted"]));
  assertEquals(r.devices[0].observed.reason, "pool-exhausted");
});

Deno.test("warnings: ORDER_PLATFORM not negotiated (E20), vhost IOTLB without a vIOMMU (E7)", () => {
  const e20 = resolveTopology(parseTopology(PRESETS["virtio-card-without-order-platform"]));
  assert(e20.devices[0].warnings.some((w) => w.includes("ORDER_PLATFORM")));
  const e7 = resolveTopology(parseTopology(PRESETS["q35-vhost-iommu-platform-no-viommu"]));
  assert(e7.devices[0].warnings.some((w) => w.includes("device IOTLB")));
});

Deno.test("order of events: ring activation faults before a buffer mapping fails (fuzz finding)", () => {
  // The device activates the queue at DRIVER_OK, before the driver maps any buffer: a ring that
  // does not translate is the first failure, not the too-large bounce mapping that would follow.
  const t = parseTopology({
    name: "activation-first",
    title: "VT-d without a context entry for the device, swiotlb=force, 300000-byte buffers",
    machine: { arch: "x86-q35" },
    memory: [{ gpa: 0, size: "0x80000000" }],
    iommus: [{ id: "vtd0", kind: "vt-d" }],
    firmware: { dmar: { drhd: [{ iommu: "vtd0", includePciAll: false, scopes: [] }] } },
    devices: [{
      id: "net0",
      type: "net",
      transport: "pci",
      bdf: "00:03.0",
      offers: ["VERSION_1", "ACCESS_PLATFORM"],
    }],
    guest: { version: "4.8", forceSwiotlb: true },
    workload: { bufferBytes: 300000 },
  });
  const d = resolveTopology(t).devices[0];
  assertEquals([d.observed.verdict, d.observed.layer], ["fault", "vt-d"]);
  assertEquals([d.predicted.verdict, d.predicted.layer], ["fault", "vt-d"]);
});

Deno.test("presets: the verdict does not depend on the ring layout (split vs packed)", () => {
  for (const name of PRESET_NAMES) {
    const json = PRESETS[name];
    const split = resolveTopology(parseTopology(json, name));
    const packed = resolveTopology(
      parseTopology(
        { ...json, workload: { ...(json.workload as object), layout: "packed" } },
        name,
      ),
    );
    for (let i = 0; i < split.devices.length; i++) {
      const a = split.devices[i].observed, b = packed.devices[i].observed;
      assertEquals(
        [b.verdict, b.layer],
        [a.verdict, a.layer],
        `${name} ${split.devices[i].id}: ${b.detail}`,
      );
    }
  }
});

// The EDGE_CASES.md outcome column, transcribed per preset as the verdict it names for the case
// the preset stands for (`null`: the catalogue's outcome is not a verdict this model produces).
const CATALOGUE_OUTCOME: Record<string, Record<string, Verdict | null>> = {
  "q35-kvm-no-viommu": { net0: "ok" }, // E1 OK (baseline)
  "q35-intel-iommu-quirk": { net0: "ok" }, // E2 OK even though DMAR claims coverage
  "q35-intel-iommu-driver-ignores-quirk": { net0: "corrupt" }, // E3 silent corruption
  "q35-intel-iommu-platform-strict": { net0: "ok" }, // E4 OK
  "q35-intel-iommu-passthrough": { net0: "ok" }, // E5 OK, near-native
  "q35-iommu-platform-old-driver": { net0: "refused" }, // E6 FEATURES_OK rejected
  "q35-vhost-iommu-platform-no-viommu": { net0: "ok" }, // E7 OK, but vhost runs with an IOTLB
  "sev-vhost-vsock-no-iotlb": { vsock0: "fault" }, // E8 device broken
  "sev-guest-device-without-access-platform": { net0: "probe-fails" }, // E9 probe fails
  "sev-guest-pre-enforcement-quirk": { net0: "fault" }, // E10 garbage or fault
  "sev-guest-swiotlb": { net0: "ok" }, // E11 OK; copy cost
  "sev-guest-swiotlb-pool-exhausted": { net0: "fault" }, // E11 pool exhaustion -> mapping error
  "s390-protected-virtualization-ccw": { blk0: "ok" }, // E12 OK
  "s390-protected-virtualization-without-access-platform": { blk0: "probe-fails" }, // E12
  "pseries-tce-host-ignores-iommu": { net0: "ok" }, // E13 OK
  "pseries-tce-driver-uses-dma-api": { net0: "corrupt" }, // E14 corruption
  "pseries-ddw-driver-uses-dma-api": { net0: "fault" }, // E14 out of RAM
  "pseries-pef-secure-vm-swiotlb": { net0: "ok" }, // E15 OK
  "sparc64-sun4u-quirk": { net0: "ok" }, // E16 OK
  "xen-guest-swiotlb-xen": { net0: "ok" }, // E17 OK for sensible Xen configurations
  "xen-guest-with-q35-viommu": { net0: "fault" }, // E17 broken with a Q35 vIOMMU
  "xen-grant-dma": { blk0: "ok" }, // E18 OK
  "xen-grant-dma-backend-without-grants": { blk0: "fault" }, // E18 backend without grants fails
  "baremetal-virtio-card-behind-vtd": { net0: "fault" }, // E19 IOMMU fault
  "virtio-card-without-order-platform": { net0: null }, // E20 ordering bugs
  "openvmm-arm64-smmuv3-translates-all": { net0: "fault" }, // E21 faults
  "arm64-virt-smmuv3-quirk": { net0: "ok" }, // E22 OK
  "q35-bypass-iommu-bridge": { net0: "ok", net1: "ok" }, // E23 OK
  "q35-bypass-iommu-bridge-stale-dmar": { net0: "corrupt" }, // E23 stale DMAR -> wrong coverage
  "viommu-boot-bypass": { net0: "ok" }, // E24 boot works with bypass
  "viommu-no-bypass-unattached": { net0: "fault" }, // E24 ... and only with bypass
  "viommu-split-unmap-qemu": { net0: "fault" }, // E25 QEMU already removed earlier mappings
  "viommu-iova-in-reserved-region": { net0: "fault" }, // E26 RESERVED -> fault
  "viommu-iova-in-msi-region": { net0: "ok" }, // E26 MSI -> passed through (identity)
  "viommu-v0-9-driver-final-device": { "viommu-pci": "probe-fails", net0: null }, // E27 misread
  "viot-viommu-inside-own-range": { "viommu-pci": "ok", net0: "ok" }, // E28 IOMMU not translated
  "iort-id-count-off-by-one": { net0: "fault" }, // E29 last RID unmapped
  "alpha-clipper-quirk": { net0: "ok" }, // E30 OK
  "alpha-typhoon-direct-window": { net0: "ok" }, // E31 OK
  "alpha-typhoon-sg-window": { net0: "ok" }, // E31 OK
  "alpha-mismatch-off-by-2g": { net0: "corrupt" }, // E32 off by 2 GiB -> wrong RAM
  "dt-dma-ranges-hardware-without-ap": { net0: "corrupt" }, // E33 wrong address
  "legacy-virtio-ram-above-16tib": { net0: "probe-fails" }, // E34 setup fails -E2BIG
  "q35-intel-iommu-lazy-stale-window": { net0: "stale-window" }, // E35 use-after-unmap
  "pkvm-restricted-dma-pool-virtio-blk": { blk0: "fault" }, // E36 allocations never satisfied
  "u-boot-2023-access-platform": { net0: "ok" }, // E37 OK
  "u-boot-old-ignores-access-platform": { net0: "refused" }, // E37 older firmware: rejection
};

Deno.test("presets: a verdict that differs from the catalogue's outcome carries a deviation note", () => {
  assertEquals(Object.keys(CATALOGUE_OUTCOME).sort(), [...PRESET_NAMES].sort());
  for (const n of PRESET_NAMES) {
    const t = parseTopology(PRESETS[n], n);
    const differs = Object.entries(CATALOGUE_OUTCOME[n]).filter(([dev, v]) =>
      t.expect[dev]?.verdict !== v
    );
    if (differs.length > 0) {
      assert(
        t.deviation && t.deviation.length > 40,
        `${n}: ${differs.map(([d]) => d)} differ from EDGE_CASES.md; say why in "deviation"`,
      );
      const text = explainText(resolveTopology(t)).replace(/\s+/g, " ");
      assert(text.includes(`deviation from the catalogue: ${t.deviation}`), text);
    } else {
      assertEquals(t.deviation, undefined, `${n}: matches the catalogue but has a deviation note`);
    }
  }
});

Deno.test("explain: an unattached virtio-iommu endpoint says whether boot bypass lets it through", () => {
  const text = (n: string) => explainText(resolveTopology(parseTopology(PRESETS[n], n)));
  for (const n of ["viommu-boot-bypass", "viommu-v0-9-driver-final-device"]) {
    assert(text(n).includes("config.bypass is set at boot: accesses pass untranslated"), text(n));
  }
  const blocked = text("viommu-no-bypass-unattached");
  assert(blocked.includes("config.bypass is clear: every access faults"), blocked);
});
