import { assert, assertEquals, assertRejects } from "@std/assert";
import { BASE, caseName, type CaseParams } from "../../bench/cases.ts";
import { createBenchable } from "../../bench/engines.ts";
import { familyOf, LocalMeasurer, WorkerMeasurer } from "../../bench/measurer.ts";
import { foldRounds, runCases } from "../../bench/runner.ts";
import { parseResults } from "../../bench/results.ts";
import { results } from "./bench_fixture.ts";

Deno.test("runner: min-of-N keeps the round with the lowest median and the spread of medians", () => {
  const s = foldRounds([
    { min: 90, p25: 95, p50: 100, p75: 110, avg: 102, n: 10 },
    { min: 80, p25: 85, p50: 90, p75: 120, avg: 95, n: 30 },
  ]);
  assertEquals([s.min, s.p25, s.p50, s.p75, s.p50max, s.rounds, s.samples], [
    80,
    85,
    90,
    120,
    100,
    2,
    40,
  ]);
  assertEquals(s.avg, (102 * 10 + 95 * 30) / 40);
});

Deno.test("runner: a tiny run yields schema-valid results with throughput filled in", async () => {
  const sol: CaseParams = { ...BASE, engine: "sol", batch: 4 };
  const cp: CaseParams = { ...BASE, engine: "memcpy", batch: 4 };
  const lines: string[] = [];
  const m = new LocalMeasurer(createBenchable);
  const rs = await runCases([sol, cp], m, { rounds: 2, timeMs: 2, progress: (l) => lines.push(l) });
  assertEquals(rs.map((r) => r.name), [caseName(sol), caseName(cp)]);
  assertEquals(lines.length, 4);
  for (const r of rs) {
    assertEquals(r.chainsPerCall, 4);
    assertEquals(r.bytesPerCall, 4 * 64);
    assertEquals(r.stats.rounds, 2);
    assert(Math.abs(r.chainsPerSec * r.nsPerChain - 1e9) < 1e-3);
  }
  parseResults(results(rs), "run");
  assertEquals(familyOf(sol), "reference");
  assertEquals(familyOf({ ...BASE, dma: "iommu-lazy" }), "split/iommu-lazy");
});

Deno.test("runner: worker isolates answer prepare, measure, counters and alloc", async () => {
  const m = new WorkerMeasurer();
  try {
    const split: CaseParams = { ...BASE, batch: 4 };
    const hit: CaseParams = { ...BASE, batch: 4, dma: "iommu-hit" };
    const rs = await runCases([split, hit], m, { rounds: 1, timeMs: 2, progress: () => {} });
    assertEquals(rs.map((r) => r.name), [caseName(split), caseName(hit)]);
    // iommu-hit: one IOTLB hit per chain (one descriptor each), no misses in steady state
    assertEquals(rs[1].counters["iotlbHits"], 4);
    assertEquals(rs[1].counters["iotlbMisses"], 0);
    assertEquals(rs[0].counters, {});
    const a = await m.alloc(split);
    assertEquals(a.name, caseName(split));
    await assertRejects(
      () => m.prepare({ ...BASE, dma: "warp-drive" }, 1),
      Error,
      "unknown bench DMA mode warp-drive",
    );
  } finally {
    m.close();
  }
});
