import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  didYouMean,
  firmwareCoverage,
  parseTopology,
  planTopology,
  PRESET_NAMES,
  PRESETS,
  requesterId,
  resolveTopology,
  TopologyError,
  topologyJsonSchema,
  versionAtLeast,
} from "../../src/mod.ts";

const base = () => ({
  name: "t",
  title: "test",
  machine: { arch: "x86-q35" },
  memory: [{ gpa: 0, size: "0x80000000" }],
  devices: [{ id: "net0", type: "net", transport: "pci", bdf: "00:03.0" }],
});

function issues(json: unknown): string[] {
  const e = assertThrows(() => parseTopology(json, "f.json"), TopologyError);
  assert(e.message.startsWith("f.json: invalid topology"), e.message);
  return [...e.issues];
}

Deno.test("topology: defaults are filled and addresses are exact u64", () => {
  const t = parseTopology({
    ...base(),
    iommus: [{ id: "tce0", kind: "tce" }],
    memory: [{ gpa: "0x100000000000", size: "0x4000000" }],
  });
  assertEquals(t.machine.vmm, "qemu");
  assertEquals(t.guest.os, "linux");
  assertEquals(t.devices[0].offers, ["VERSION_1"]);
  assertEquals(t.memory[0].gpa, 0x1000_0000_0000);
  const tce = t.iommus[0];
  if (tce.kind !== "tce") throw new Error("not tce");
  assertEquals(tce.ddwStart, 2n ** 63n);
});

Deno.test("topology: errors name the field and the fix", () => {
  const a = issues({ ...base(), machine: { arch: "x86-q36" } });
  assert(a.some((l) => l.startsWith("machine.arch:") && l.includes("x86-q35")), a.join("\n"));
  const b = issues({ ...base(), devices: [{ id: "net0", type: "net", transport: "pci" }] });
  assert(b.some((l) => l.startsWith("devices[0].bdf:") && l.includes('"00:03.0"')), b.join("\n"));
  const c = issues({ ...base(), extra: 1 });
  assert(c.some((l) => l.includes('remove "extra"')), c.join("\n"));
  const d = issues({
    ...base(),
    devices: [{
      id: "n",
      type: "net",
      transport: "pci",
      bdf: "00:03.0",
      legacy: true,
      offers: ["ACCESS_PLATFORM"],
    }],
  });
  assert(
    d.some((l) => l.startsWith("devices[0].offers:") && l.includes("32 feature bits")),
    d.join("\n"),
  );
  const e = issues({
    ...base(),
    firmware: { dmar: { drhd: [{ iommu: "nope", includePciAll: true }] } },
  });
  assert(
    e.some((l) => l.startsWith("firmware.dmar.drhd[0].iommu:") && l.includes("iommus[]")),
    e.join("\n"),
  );
  const f = issues({ ...base(), memory: [{ gpa: 0, size: 4096 }, { gpa: 0, size: 8192 }] });
  assert(f.some((l) => l.startsWith("memory[1]:") && l.includes("overlaps")), f.join("\n"));
  const g = issues({ ...base(), memory: [{ gpa: 2 ** 60, size: 4096 }] });
  assert(g.some((l) => l.startsWith("memory[0].gpa") && l.includes("hex string")), g.join("\n"));
  const h = issues({ ...base(), expect: { nobody: { verdict: "ok" } } });
  assert(h.some((l) => l.startsWith("expect.nobody:")), h.join("\n"));
});

Deno.test("topology: the JSON Schema file is current (deno task schema)", async () => {
  const file = JSON.parse(
    await Deno.readTextFile(new URL("../../docs/topology.schema.json", import.meta.url)),
  );
  assertEquals(file, topologyJsonSchema());
});

Deno.test("requesterId: bus << 8 | dev << 3 | fn", () => {
  assertEquals(requesterId("00:03.0"), 0x18);
  assertEquals(requesterId("80:1f.7"), 0x80ff);
  assertEquals(requesterId("0000:01:00.1"), 0x101);
  assertEquals(requesterId(undefined), undefined);
});

Deno.test("versionAtLeast", () => {
  assert(versionAtLeast("5.13", "5.13"));
  assert(versionAtLeast("6.1", "5.13"));
  assert(!versionAtLeast("5.9", "5.13"));
  assert(versionAtLeast("2023.05", "2023.05"));
});

Deno.test("firmware: IORT id_count is 'number of IDs - 1' (E29)", () => {
  const t = parseTopology(PRESETS["iort-id-count-off-by-one"]);
  assertEquals(firmwareCoverage(t, t.devices[0]).iommu, null); // the buggy parser drops RID 0x17
  const fixed = parseTopology({
    ...PRESETS["iort-id-count-off-by-one"],
    guest: { iortIdCount: "minus-one" },
  });
  assertEquals(firmwareCoverage(fixed, fixed.devices[0]).iommu, "smmu0");
});

Deno.test("firmware: DMAR scopes beat INCLUDE_PCI_ALL; bypass buses are not listed (E23)", () => {
  const t = parseTopology(PRESETS["q35-bypass-iommu-bridge"]);
  assertEquals(firmwareCoverage(t, t.devices[0]).iommu, null);
  assertEquals(firmwareCoverage(t, t.devices[1]).iommu, "vtd0");
});

Deno.test("policy: Linux era decides ACCESS_PLATFORM acceptance and the DMA API", () => {
  const mk = (version: string, offers: string[], extra = {}) =>
    planTopology(parseTopology({
      ...base(),
      devices: [{ id: "net0", type: "net", transport: "pci", bdf: "00:03.0", offers }],
      guest: { version, ...extra },
    }))[0];
  assertEquals(mk("4.4", ["VERSION_1", "ACCESS_PLATFORM"]).probe.status, "refused");
  assertEquals(mk("4.8", ["VERSION_1", "ACCESS_PLATFORM"]).usesDmaApi, true);
  assertEquals(mk("6.8", ["VERSION_1"]).usesDmaApi, false);
  assertEquals(mk("4.5", ["VERSION_1"], { dmaApi: "always" }).usesDmaApi, true);
});

Deno.test("topology: the run's rings, buffers and pool must fit in RAM (named, with a fix)", () => {
  const small = issues({ ...base(), memory: [{ gpa: 0, size: "0x1000000" }] });
  assert(small.some((l) => l.startsWith("workload:") && l.includes("34 MiB")), small.join("\n"));
  const odd = issues({ ...base(), workload: { ringGpa: 0x1000010 } });
  assert(odd.some((l) => l.includes("not page-aligned")), odd.join("\n"));
  // Rings and buffers placed off the 2 MiB chunk grid still run (one backed span, no straddle).
  const t = parseTopology({
    ...base(),
    workload: { ringGpa: 0x11ff000, bufferGpa: 0x1201000, bufferBytes: 300000 },
  });
  assertEquals(resolveTopology(t).devices[0].observed.verdict, "ok");
});

Deno.test("topology: a bad address or a non-integer size is a named error, never a crash", () => {
  // zod 4 runs refinements even after a field failed; the cross-check must not see raw values.
  const preset = () =>
    structuredClone(PRESETS["q35-intel-iommu-lazy-stale-window"]) as unknown as {
      memory: Record<string, unknown>[];
      iommus: Record<string, unknown>[];
    };
  const hex = preset();
  hex.memory[0].size = "0xzz";
  const a = issues(hex);
  assert(a.some((l) => l.startsWith("memory[0].size:") && l.includes("hex string")), a.join("\n"));
  const frac = preset();
  frac.memory[0].size = 4096.5;
  const b = issues(frac);
  assert(
    b.some((l) => l.startsWith("memory[0].size:") && l.includes("whole number")),
    b.join("\n"),
  );
  const gpa = preset();
  gpa.memory[0].gpa = "0x1g";
  const c = issues(gpa);
  assert(c.some((l) => l.startsWith("memory[0].gpa:")), c.join("\n"));
  const iova = preset();
  iova.iommus[0].iova = { start: "zz", end: 4096 };
  const d = issues(iova);
  assert(d.some((l) => l.startsWith("iommus[0].iova.start:")), d.join("\n"));
});

Deno.test("topology: did-you-mean for a mistyped field, enum value and preset; a wrong type is not 'required'", () => {
  const a = issues({ ...base(), machine: { arch: "x86-q53" } });
  assert(a.some((l) => l.includes('did you mean "x86-q35"?')), a.join("\n"));
  const b = issues({ ...base(), devcies: [] });
  assert(b.some((l) => l.includes('"devcies" (did you mean "devices"?)')), b.join("\n"));
  const c = issues({ ...base(), title: 5 });
  assert(c.some((l) => l.startsWith("title:") && !l.includes("required")), c.join("\n"));
  const d = issues({ name: "t", machine: { arch: "x86-q35" }, memory: [], devices: [] });
  assert(d.some((l) => l.startsWith("title:") && l.includes("required")), d.join("\n"));
  const e = assertThrows(() => parseTopology({ ...base(), title: 5, extra: 1 }, "f.json"));
  assertEquals((e as Error).message.split("\n").length, 1, "one line");
  assertEquals(
    didYouMean("q35-intel-iommu-lazy-stale-windw", PRESET_NAMES),
    "q35-intel-iommu-lazy-stale-window",
  );
  assertEquals(didYouMean("completely-different", ["x86-q35"]), undefined);
});
