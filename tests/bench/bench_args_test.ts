import { assert, assertEquals, assertThrows } from "@std/assert";
import { HELP, parseBenchArgs } from "../../bench/args.ts";
import {
  type Availability,
  buildSuites,
  caseName,
  chainShape,
  segmentSizes,
  selectCases,
  smokeCases,
} from "../../bench/cases.ts";

Deno.test("args: defaults, and smoke shortens rounds and time", () => {
  const d = parseBenchArgs([]);
  assertEquals([d.smoke, d.rounds, d.timeMs, d.threshold, d.noise], [false, 3, 200, 0.1, 0.08]);
  assertEquals([d.save, d.compare, d.json, d.filter, d.suites], [null, null, null, null, []]);
  const s = parseBenchArgs(["--smoke"]);
  assertEquals([s.smoke, s.rounds, s.timeMs], [true, 3, 30]);
});

Deno.test("args: values, repeated --suite, percentages", () => {
  const a = parseBenchArgs([
    "--suite",
    "size",
    "--suite=payload",
    "--filter",
    "^split",
    "--rounds",
    "3",
    "--time",
    "50",
    "--save",
    "before",
    "--compare",
    "old",
    "--threshold",
    "15",
    "--noise",
    "5",
    "--json",
    "/tmp/x.json",
    "--invalidation-ns",
    "2500",
    "--no-alloc",
    "--isolate",
    "none",
    "--request-ns",
    "700",
  ]);
  assertEquals(a.suites, ["size", "payload"]);
  assertEquals(a.filter?.source, "^split");
  assertEquals([a.rounds, a.timeMs, a.save, a.compare, a.json], [
    3,
    50,
    "before",
    "old",
    "/tmp/x.json",
  ]);
  assertEquals([a.threshold, a.noise, a.invalidationNs, a.noAlloc], [0.15, 0.05, 2500, true]);
  assertEquals([a.isolate, parseBenchArgs([]).isolate], ["none", "case"]);
  assertEquals(parseBenchArgs(["--isolate", "family"]).isolate, "family");
  assertEquals(parseBenchArgs(["--check-isolation"]).checkIsolation, true);
  assertEquals([a.requestNs, parseBenchArgs([]).requestNs], [700, 5000]);
  assert(parseBenchArgs(["-h"]).help);
});

Deno.test("args: errors name the flag", () => {
  assertThrows(() => parseBenchArgs(["--frobnicate"]), Error, "unknown option --frobnicate");
  assertThrows(() => parseBenchArgs(["--rounds", "two"]), Error, "--rounds two");
  assertThrows(() => parseBenchArgs(["--rounds", "0"]), Error, "--rounds 0");
  assertThrows(() => parseBenchArgs(["--threshold", "x"]), Error, "--threshold");
  assertThrows(() => parseBenchArgs(["--filter", "("]), Error, "--filter (");
  assertThrows(() => parseBenchArgs(["--save", "a", "--save", "b"]), Error, "--save given more");
  assertThrows(() => parseBenchArgs(["--json"]), Error, "--json needs a value");
  assertThrows(() => parseBenchArgs(["--isolate", "maybe"]), Error, "--isolate maybe");
});

Deno.test("args: help documents every flag", () => {
  for (
    const f of [
      "--smoke",
      "--suite",
      "--filter",
      "--save",
      "--compare",
      "--threshold",
      "--noise",
      "--json",
      "--rounds",
      "--time",
      "--invalidation-ns",
      "--no-alloc",
      "--list",
      "--isolate",
      "--request-ns",
    ]
  ) {
    assert(HELP.includes(f), f);
  }
});

const both: Availability = { layouts: ["split", "packed"], dmaModes: ["identity", "iommu-lazy"] };

Deno.test("cases: one axis at a time, no cross product, sol counterparts added", () => {
  const suites = buildSuites(both);
  const size = selectCases(suites, ["size"], null);
  const names = size.map(caseName);
  assert(names.includes("split/identity q32768 b32 p64 c1"));
  assert(names.includes("packed/identity q64 b32 p64 c1"));
  assert(names.includes("sol q32768 b32 p64 c1"));
  assertEquals(new Set(names).size, names.length);
  // every engine case differs from the base point on at most one axis (besides engine/dma)
  const all = selectCases(suites, [], null);
  assert(all.length < 120, `${all.length} cases`);
  assertThrows(() => selectCases(suites, ["nope"], null), Error, "--suite nope: no such suite");
  const f = selectCases(suites, [], /^packed\/iommu/);
  assert(f.length > 0);
  assert(f.every((c) => c.engine === "sol" || caseName(c).startsWith("packed/iommu")));
});

Deno.test("cases: the lines suite holds every case the issue #16 targets need", async () => {
  const { computeTargets } = await import("../../bench/targets.ts");
  const { caseResult } = await import("./bench_fixture.ts");
  const avail: Availability = {
    layouts: ["split", "packed"],
    dmaModes: ["identity", "swiotlb", "iommu-strict", "iommu-lazy", "iommu-hit"],
  };
  const lines = selectCases(buildSuites(avail), ["lines"], null);
  const names = lines.map(caseName);
  // each mode is measured right after its identity case (pairs are close in time)
  const i = names.indexOf("split/identity q256 b32 p1500 c1");
  assertEquals(names[i + 1], "split/swiotlb q256 b32 p1500 c1");
  assert(!names.some((n) => n.includes("iommu-hit")));
  const t = computeTargets(lines.map((c) => caseResult(c, 500 + 1000 * c.chainLen)), [], {
    invalidationNs: 1000,
    requestNs: 5000,
  });
  for (
    const n of [
      "split 64 B batch 32 vs speed-of-light",
      "packed vs split throughput (base point)",
      "split: swiotlb vs identity time, 1500 B",
      "packed: iommu-strict vs identity time, 64 B",
      "packed: IOMMU lazy vs strict (measured wall time, lazy / strict)",
      "packed: marginal ns per added descriptor flat over chain length",
    ]
  ) {
    const x = t.find((y) => y.name === n);
    assert(x && x.status !== "n/a", `${n}: ${x?.status} ${x?.detail}`);
  }
});

Deno.test("cases: without rings only sol and memcpy run; smoke is small", () => {
  const none: Availability = { layouts: [], dmaModes: [] };
  const all = selectCases(buildSuites(none), [], null);
  assert(all.every((c) => c.engine === "sol" || c.engine === "memcpy"));
  assertEquals(smokeCases(both).length, 4);
});

Deno.test("cases: chain shapes and segment sizes", () => {
  assertEquals(chainShape(1), { readable: 0, writable: 1 });
  assertEquals(chainShape(4), { readable: 2, writable: 2 });
  assertEquals(chainShape(16), { readable: 8, writable: 8 });
  assertEquals(segmentSizes(1500, 8).reduce((a, b) => a + b), 1500);
  assertEquals(segmentSizes(64, 1), [64]);
  assert(segmentSizes(3, 8).every((n) => n >= 1));
});
