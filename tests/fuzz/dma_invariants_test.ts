/**
 * `dma-invariants` fires on engine bugs planted in a copy of the engine's own source (not
 * wrappers written beside the oracle): a swiotlb that forgets page alignment for mappings of
 * 4 KiB and more, an IOVA allocator that size-aligns only powers of two, and (the `api` part)
 * a dma-direct window path, a fallback and a dma-iommu unmap each missing one check.
 * @module
 */

import fc from "fast-check";
import { assert, assertEquals } from "@std/assert";
import {
  type DmaInvariantsEngine,
  dmaInvariantsTarget,
  makeDmaInvariantsTarget,
  REAL_DMA_INVARIANTS_ENGINE,
  viommuBounceWith,
} from "../../fuzz/targets/dma_invariants.ts";
import {
  createDmaMode,
  FallbackDmaApi,
  type IovaAllocator,
  type SwiotlbDmaApi,
} from "../../src/dma/mod.ts";
import { GuestMemory, type U64 } from "../../src/memory/mod.ts";

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

// The `api` part (window-iommu's driver API), on bugs planted in copies of the engine's
// direct_api.ts, fallback_api.ts and iommu_api.ts, composed as createDmaMode composes them.
function windowIommuEngine(
  make: (
    mode: ReturnType<typeof createDmaMode>,
    real: FallbackDmaApi,
    sgMask: U64,
  ) => FallbackDmaApi,
): DmaInvariantsEngine {
  return {
    ...REAL_DMA_INVARIANTS_ENGINE,
    newWindowIommu: (windows, mask) => {
      const mode = createDmaMode("window-iommu", GuestMemory.flat(8 << 20), { windows, mask });
      const sgMask = BigInt(mask) > 0x7fff_ffffn ? 0x7fff_ffff : mask;
      const api = make(mode, mode.api as FallbackDmaApi, sgMask);
      return { api, primary: api.primary, space: mode.space };
    },
  };
}

Deno.test("dma-invariants: a window path checking the mask on the first byte only is caught", async () => {
  const m = await importPlanted(
    "direct_api.ts",
    "return !(bus + (length > 0 ? length - 1 : 0) > this.#limitNum);",
    "return !(bus > this.#limitNum);",
  );
  const target = makeDmaInvariantsTarget(windowIommuEngine((_mode, real, _sg) =>
    new FallbackDmaApi(
      new m.DirectDmaApi({ mask: real.primary.limit, windows: real.primary.windows!, name: "w" }),
      real.secondary,
    )
  ));
  const f = firstFailure(target);
  assert(f !== null && f.includes("dma-view") && f.includes("mask"), String(f));
});

Deno.test("dma-invariants: a fallback that owns every number bus address is caught", async () => {
  const m = await importPlanted(
    "fallback_api.ts",
    "return this.primary.busToGpa(bus) >= 0;",
    'return typeof bus !== "number";',
  );
  const target = makeDmaInvariantsTarget(
    windowIommuEngine((_mode, real) => new m.FallbackDmaApi(real.primary, real.secondary)),
  );
  const f = firstFailure(target);
  // a window unmap sent to the IOMMU, or an unowned bus address taken for a window's
  assert(f !== null && (f.includes("not-mapped") || f.includes("fault-reason")), String(f));
});

Deno.test("dma-invariants: dma-iommu unmapping a coherent mapping as streaming is caught", async () => {
  const m = await importPlanted(
    "iommu_api.ts",
    "if ((b & FLAG_COHERENT) !== coherent) {",
    "if (false) {",
  );
  const target = makeDmaInvariantsTarget(
    windowIommuEngine((mode, real, sgMask) =>
      new FallbackDmaApi(
        real.primary,
        new m.IommuDmaApi({ iommu: mode.iommu!, domain: mode.domain!, mask: sgMask }),
      )
    ),
  );
  const f = firstFailure(target);
  assert(f !== null && f.includes("fault-reason") && f.includes("wrong-kind"), String(f));
});

for (const fault of ["window-ignores-mask", "map-number-rounds"]) {
  Deno.test(`dma-invariants: planted ${fault} is caught by the api part`, () => {
    const f = firstFailure(dmaInvariantsTarget.withPlantedFault!(fault));
    assert(f !== null && f.includes("dma-view"), String(f));
  });
}

// The swiotlb part's syncs, misuse and fallback regime (`force: false`), on planted copies.
for (
  const [name, find, replace, expect] of [
    [
      "a syncForCpu that copies a TO_DEVICE slot back",
      "if (slotGpa >= 0 && dir !== 1) this.#copyBack(slotGpa, this.#syncOrig, length);",
      "if (slotGpa >= 0) this.#copyBack(slotGpa, this.#syncOrig, length);",
      "syncForCpu",
    ],
    [
      "a sync that may run past the mapping's end",
      "if (length > left) {",
      "if (false) {",
      "past the end",
    ],
    [
      "a fallback swiotlb that bounces only window refusals, not mask ones",
      '(e.reason !== "mask" && e.reason !== "window")) throw e;',
      'e.reason !== "window") throw e;',
      "mask",
    ],
  ]
) {
  Deno.test(`dma-invariants: ${name} is caught`, async () => {
    const m = await importPlanted("swiotlb.ts", find, replace);
    const target = makeDmaInvariantsTarget({
      ...REAL_DMA_INVARIANTS_ENGINE,
      Swiotlb: m.SwiotlbDmaApi as typeof SwiotlbDmaApi,
    });
    const f = firstFailure(target);
    assert(f !== null && f.includes(expect), String(f));
  });
}

Deno.test("dma-invariants: an allocator whose free hands back a reservation is caught", async () => {
  const m = await importPlanted(
    "iova_allocator.ts",
    "return i >= 0 && this.#r[o + F_LO] === pfn && this.#r[o + F_KIND] === LIVE ? i : -1;",
    "return i >= 0 && this.#r[o + F_LO] === pfn ? i : -1;",
  );
  const target = makeDmaInvariantsTarget({
    ...REAL_DMA_INVARIANTS_ENGINE,
    newAllocator: (startPfn) => new m.IovaAllocator({ startPfn }) as IovaAllocator,
  });
  const f = firstFailure(target);
  assert(f !== null && f.includes("iova-invariant"), String(f));
});

Deno.test("dma-invariants: an assembly that forgets an unmapped bounce slot over virtio-iommu is caught", async () => {
  const m = await importPlanted(
    "assembly.ts",
    "this.inner.unmap(bus, length, dir);\n    this.#live.delete(bus);",
    "this.inner.unmap(bus, length, dir);",
  );
  const target = makeDmaInvariantsTarget({
    ...REAL_DMA_INVARIANTS_ENGINE,
    newViommuBounce: viommuBounceWith(m.assembleDma),
  });
  const f = firstFailure(target);
  assert(f !== null && f.includes("swiotlb-invariant") && f.includes("reverses"), String(f));
});
