import { assert, assertEquals } from "@std/assert";
import { axisSeries, logTicks, niceScale, plotResults, renderSvg } from "../../bench/plot.ts";
import { caseResult, results } from "./bench_fixture.ts";

function sample() {
  const rs = [];
  for (const size of [64, 256, 1024]) {
    rs.push(caseResult({ engine: "sol", size }, 1000));
    rs.push(caseResult({ engine: "split", size }, 1800));
  }
  for (const payload of [1500, 65536]) rs.push(caseResult({ engine: "split", payload }, 3000));
  rs.push(caseResult({ engine: "memcpy", payload: 64 }, 800));
  rs.push(caseResult({ engine: "split", dma: "iommu-lazy" }, 2500));
  return results(rs);
}

/** Tags opened minus tags closed, ignoring self-closing and the XML declaration. */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self) continue;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name);
  }
  return stack.length === 0;
}

Deno.test("plot: the SVG is well-formed, with axes labels, a legend and one path per series", () => {
  const svg = plotResults(sample());
  assert(svg.startsWith("<?xml"));
  assert(balanced(svg), "unbalanced tags");
  assertEquals((svg.match(/<svg /g) ?? []).length, 1);
  for (const t of ["queue size", "payload per chain", "M chains/s", "GB/s"]) {
    assert(svg.includes(t), `missing ${t}`);
  }
  assertEquals((svg.match(/class="x-label"/g) ?? []).length, 5);
  assertEquals((svg.match(/class="y-label"/g) ?? []).length, 5);
  // size panel: sol + split/identity; payload GB/s panel: sol, split/identity, memcpy;
  // split per-DMA panel: identity, iommu-lazy; packed per-DMA: no data; chain (q1024): sol, split
  assertEquals((svg.match(/class="series"/g) ?? []).length, 2 + 3 + 2 + 0 + 2);
  assertEquals((svg.match(/class="legend"/g) ?? []).length, 2 + 3 + 2 + 0 + 2);
  assert(svg.includes("speed-of-light") && svg.includes(">iommu-lazy<"));
  assert(svg.includes("split: throughput per DMA mode") && svg.includes("(log scale)"));
  assertEquals((svg.match(/no data in this run/g) ?? []).length, 1);
  const empty = plotResults(results([]));
  assert(balanced(empty));
  assertEquals((empty.match(/no data in this run/g) ?? []).length, 5);
});

Deno.test("plot: axis series keep only cases that differ from the base point on that axis", () => {
  const s = axisSeries(sample().results, "size", (r) => r.chainsPerSec);
  assertEquals(s.map((x) => x.name).sort(), [
    "speed-of-light",
    "split/identity",
    "split/iommu-lazy",
  ]);
  assertEquals(s.find((x) => x.name === "split/iommu-lazy")!.points, [[256, 32e9 / 2500]]);
  const split = s.find((x) => x.name === "split/identity")!;
  assertEquals(split.points.map(([x]) => x), [64, 256, 1024]);
});

Deno.test("plot: labels are escaped, nice scales cover the maximum", () => {
  const svg = renderSvg("a<b & c", "f", [{
    title: "<t>",
    xLabel: "x",
    yLabel: "y",
    xLog: false,
    series: [{ name: "s&p", points: [[1, 2], [2, 3]] }],
  }]);
  assert(svg.includes("a&lt;b &amp; c") && svg.includes("&lt;t&gt;") && svg.includes("s&amp;p"));
  assert(balanced(svg));
  assertEquals(logTicks(0.1, 10), [0.1, 0.2, 0.5, 1, 2, 5, 10]);
  assertEquals(logTicks(1, 1e5), [1, 10, 100, 1000, 10000, 100000]);
  for (const m of [0.7, 3, 18.3, 44, 1234]) {
    const { top, step } = niceScale(m);
    assert(top >= m && step > 0 && top / step <= 10, `${m}: ${top} ${step}`);
  }
});

Deno.test("plot: spread bars per point, DMA panels on shared payloads, and a before/after overlay", async () => {
  const { plotOverlay, sharedX } = await import("../../bench/plot.ts");
  const svg = plotResults(sample());
  // one spread bar per plotted point
  const points = (svg.match(/<circle /g) ?? []).length -
    (svg.match(/class="legend"/g) ?? []).length;
  assertEquals((svg.match(/class="spread"/g) ?? []).length, points);
  const s = axisSeries(sample().results, "payload", (r) => r.chainsPerSec);
  for (const x of s) {
    x.points.forEach(([, y], i) => {
      const [lo, hi] = x.spread![i];
      assert(lo <= y && y <= hi, `${x.name}: ${lo} <= ${y} <= ${hi}`);
    });
  }
  // identity measured at 64, 1500, 65536 B; iommu-lazy only at 64 B: the DMA panel keeps 64 B
  const shared = sharedX(s.filter((x) => x.name.startsWith("split/")));
  assert(shared.every((x) => x.points.map(([p]) => p).join() === "64"), JSON.stringify(shared));
  const o = plotOverlay(sample(), sample(), ["before", "after"]);
  assert(balanced(o));
  assert(o.includes("[before]") && o.includes("[after]") && o.includes('stroke-dasharray="6 4"'));
  assertEquals(
    (o.match(/class="series"/g) ?? []).length,
    2 * (svg.match(/class="series"/g) ?? []).length,
  );
});
