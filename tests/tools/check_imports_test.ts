import { assertEquals, assertMatch } from "@std/assert";
import {
  checkImports,
  findCycles,
  type ImportGraph,
  layerOf,
  layerViolations,
} from "../../tools/check_imports.ts";

function graph(edges: Record<string, string[]>): ImportGraph {
  const g: ImportGraph = new Map();
  for (const [from, tos] of Object.entries(edges)) {
    g.set(from, new Set(tos));
    for (const t of tos) if (!g.has(t)) g.set(t, new Set());
  }
  return g;
}

Deno.test("findCycles: a three-file loop and a self-import are found, a diamond is not", () => {
  assertEquals(
    findCycles(graph({
      "fuzz/a.ts": ["fuzz/b.ts"],
      "fuzz/b.ts": ["fuzz/c.ts"],
      "fuzz/c.ts": ["fuzz/a.ts"],
      "fuzz/self.ts": ["fuzz/self.ts"],
      "src/x.ts": ["src/y.ts", "src/z.ts"],
      "src/y.ts": ["src/w.ts"],
      "src/z.ts": ["src/w.ts"],
    })),
    [["fuzz/a.ts", "fuzz/b.ts", "fuzz/c.ts"], ["fuzz/self.ts"]],
  );
});

Deno.test("layerViolations: upward imports, peer imports and deep imports from fuzz are named", () => {
  const problems = layerViolations(graph({
    "src/dma/iommu.ts": ["src/memory/guest_memory.ts", "src/virtio/chain.ts"],
    "src/inspect/x.ts": ["src/devices/mod.ts"],
    "src/platform/p.ts": ["src/devices/virtio_iommu/device.ts"],
    "fuzz/t.ts": ["src/virtio/mod.ts", "src/inspect/_internal.ts", "src/dma/iommu.ts"],
    "tools/x.ts": ["fuzz/t.ts"],
    "src/virtio/q.ts": ["tests/helper.ts"],
    "tests/any_test.ts": ["fuzz/t.ts", "src/dma/iommu.ts"],
  }));
  assertEquals(problems.length, 5, problems.join("\n"));
  assertMatch(problems[0], /^fuzz\/t\.ts imports src\/dma\/iommu\.ts, a deep file/);
  assertMatch(
    problems[1],
    /^src\/dma\/iommu\.ts imports src\/virtio\/chain\.ts: layer src\/virtio/,
  );
  assertMatch(problems[2], /^src\/inspect\/x\.ts imports src\/devices\/mod\.ts/);
  assertMatch(problems[3], /^src\/virtio\/q\.ts imports tests\/helper\.ts/);
  assertMatch(problems[4], /^tools\/x\.ts imports fuzz\/t\.ts/);
  assertEquals(layerOf("src/mod.ts"), "src/mod.ts");
  assertEquals(layerOf("src/vhost_user/frontend.ts"), "src/vhost_user");
});

Deno.test("checkImports: a cycle planted in real files is caught through deno info", async () => {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "check-imports-" });
  try {
    await Deno.mkdir(`${root}/fuzz`);
    await Deno.mkdir(`${root}/src/memory`, { recursive: true });
    await Deno.writeTextFile(`${root}/src/memory/mod.ts`, "export const PAGE = 4096;\n");
    await Deno.writeTextFile(
      `${root}/fuzz/report.ts`,
      'import { SHARD } from "./shards.ts";\nimport { PAGE } from "../src/memory/mod.ts";\n' +
        "export const REPORT = SHARD + PAGE;\n",
    );
    await Deno.writeTextFile(`${root}/fuzz/shards.ts`, "export const SHARD = 1;\n");
    assertEquals(await checkImports(root), []);

    // Plant the loop the project once had: shards.ts imports report.ts back (type-only counts).
    await Deno.writeTextFile(
      `${root}/fuzz/shards.ts`,
      'import type { REPORT } from "./report.ts";\nexport const SHARD = 1;\n' +
        "export type R = typeof REPORT;\n",
    );
    assertEquals(await checkImports(root), [
      "import cycle among fuzz/report.ts, fuzz/shards.ts. Fix: move what they share into a " +
      "file none of them imports",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkImports: this project has no cycle, no layer or face violation", async () => {
  assertEquals(await checkImports(new URL("../..", import.meta.url).pathname), []);
});
