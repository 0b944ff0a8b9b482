import { assert, assertEquals } from "@std/assert";
import {
  explainText,
  parseTopology,
  PRESET_NAMES,
  PRESETS,
  resolveTopology,
  type Verdict,
  VERDICTS,
} from "../src/mod.ts";

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
