/**
 * `dma-invariants` fires on engine bugs planted in a copy of the engine's own source (not
 * wrappers written beside the oracle): a swiotlb that forgets page alignment for mappings of
 * 4 KiB and more, and an IOVA allocator that size-aligns only powers of two.
 * @module
 */

import fc from "fast-check";
import { assert, assertEquals } from "@std/assert";
import {
  dmaInvariantsTarget,
  makeDmaInvariantsTarget,
  REAL_DMA_INVARIANTS_ENGINE,
} from "../../fuzz/targets/dma_invariants.ts";
import type { IovaAllocator, SwiotlbDmaApi } from "../../src/dma/mod.ts";

const SRC = new URL("../../src/dma/", import.meta.url);

/** Imports a copy of `src/dma/<file>` with `find` replaced by `replace` (exactly once). */
async function importPlanted(file: string, find: string, replace: string) {
  const text = await Deno.readTextFile(new URL(file, SRC));
  assertEquals(text.split(find).length, 2, `${file}: "${find}" must occur exactly once`);
  const planted = text.replace(find, replace)
    .replace(/from "(\.\.?\/[^"]+)"/g, (_m, p) => `from "${new URL(p, SRC).href}"`);
  const path = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(path, planted);
  try {
    return await import(`file://${path}`);
  } finally {
    await Deno.remove(path);
  }
}

function firstFailure(target: typeof dmaInvariantsTarget, runs = 3000): string | null {
  const r = fc.check(fc.property(target.arbitrary(), (i) => target.run(i)), {
    seed: 1,
    numRuns: runs,
  });
  return r.failed ? String(r.errorInstance) : null;
}

Deno.test("dma-invariants: the real engine holds every invariant (seed 1)", () => {
  assertEquals(firstFailure(dmaInvariantsTarget), null);
});

Deno.test("dma-invariants: swiotlb without page alignment for >= 4 KiB is caught", async () => {
  const m = await importPlanted("swiotlb.ts", "length >= 4096 ? 2 : 1", "1");
  const target = makeDmaInvariantsTarget({
    ...REAL_DMA_INVARIANTS_ENGINE,
    Swiotlb: m.SwiotlbDmaApi as typeof SwiotlbDmaApi,
  });
  const f = firstFailure(target);
  assert(f !== null && f.includes("swiotlb-invariant") && f.includes("page-aligned"), String(f));
});

Deno.test("dma-invariants: an allocator aligning only powers of two is caught", async () => {
  const m = await importPlanted(
    "iova_allocator.ts",
    "while (align < pages) align *= 2;",
    "if ((pages & (pages - 1)) === 0) align = pages;",
  );
  const Planted = m.IovaAllocator as typeof IovaAllocator;
  const target = makeDmaInvariantsTarget({
    ...REAL_DMA_INVARIANTS_ENGINE,
    newAllocator: (startPfn) => new Planted({ startPfn }),
  });
  const f = firstFailure(target);
  assert(f !== null && f.includes("iova-invariant") && f.includes("not aligned"), String(f));
});

for (
  const [name, find, replace] of [
    [
      "an access ending at 2^64 - 1 reported as a wrap",
      "bus + BigInt(length) - 1n > U64_MAX",
      "bus + BigInt(length) - 1n >= U64_MAX",
    ],
    [
      "a window that reaches one byte past its end",
      "if (off >= 0 && off < this.#size[i]) {\n          const room",
      "if (off >= 0 && off <= this.#size[i]) {\n          const room",
    ],
  ]
) {
  Deno.test(`dma-invariants: ${name} is caught`, async () => {
    const m = await importPlanted("window.ts", find, replace);
    const target = makeDmaInvariantsTarget({
      ...REAL_DMA_INVARIANTS_ENGINE,
      newWindows: (windows) => {
        const space = new m.WindowAddressSpace(windows);
        return { space, table: space.table };
      },
    });
    const f = firstFailure(target);
    assert(f !== null && f.includes("fault-reason") && f.includes("window"), String(f));
  });
}
