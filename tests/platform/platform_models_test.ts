/**
 * The device view the platform builds for alpha Typhoon (direct window before the SGMAP) and
 * POWER's DDW beside the TCE window (dma's WindowOrAddressSpace): decoded by address, so the
 * fallback IOMMU only sees the accesses it decodes and a fault is thrown once, by the fallback.
 */

import assert from "node:assert/strict";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import { DMA_ACCESS_READ, DmaFault } from "../../src/dma/errors.ts";
import { DmaTranslation } from "../../src/dma/types.ts";
import type { DmaAccess, DmaAddressSpace } from "../../src/mod.ts";
import type { U64 } from "../../src/memory/u64.ts";
import { DmaWindowTable } from "../../src/dma/window.ts";
import { Iommu } from "../../src/dma/iommu.ts";
import { WindowOrAddressSpace } from "../../src/dma/compose.ts";

/** A fallback that counts calls and always faults with one recorded error. */
class SpyFallback implements DmaAddressSpace {
  readonly name = "spy";
  calls = 0;
  last: DmaFault | null = null;
  translate(bus: U64, length: number, access: DmaAccess, _out: DmaTranslation): void {
    this.calls++;
    throw (this.last = new DmaFault("unmapped", bus, length, access, this.name, "spy"));
  }
}

Deno.test("window decode: a direct-window access never reaches the fallback", () => {
  const spy = new SpyFallback();
  const v = new WindowOrAddressSpace(
    new DmaWindowTable([{ cpuStart: 0, busStart: 0x8000_0000, size: 0x8000_0000 }]),
    spy,
    "typhoon",
  );
  const out = new DmaTranslation();
  v.translate(0x8000_1000, 512, DMA_ACCESS_READ, out);
  assert.equal(out.gpa, 0x1000);
  assert.equal(out.length, 512);
  // The prefix stops at the window's end (the caller loops).
  v.translate(0xffff_ff00, 512, DMA_ACCESS_READ, out);
  assert.equal(out.length, 0x100);
  assert.equal(spy.calls, 0);
});

Deno.test("window decode: outside the windows the fallback decides, and its fault is thrown once", () => {
  const spy = new SpyFallback();
  const v = new WindowOrAddressSpace(
    new DmaWindowTable([{ cpuStart: 0, busStart: 2n ** 63n, size: 2 ** 52 }]),
    spy,
  );
  assert.equal(v.name, "window|spy");
  const out = new DmaTranslation();
  v.translate(2n ** 63n + 0x2000n, 64, DMA_ACCESS_READ, out);
  assert.equal(out.gpa, 0x2000);
  assert.equal(spy.calls, 0);
  let caught: unknown = null;
  try {
    v.translate(0x1000, 64, DMA_ACCESS_READ, out);
  } catch (e) {
    caught = e;
  }
  assert.equal(spy.calls, 1);
  // Not re-wrapped: the caller sees the fallback's own fault (layer and reason intact).
  assert.equal(caught, spy.last);
});

Deno.test("window decode: the fallback IOMMU counts no faults for window accesses", () => {
  const mem = new GuestMemory([{ gpa: 0, size: 0x10_0000 }]);
  const iommu = new Iommu(mem, { name: "typhoon-sg" });
  const dom = iommu.createDomain("paged");
  iommu.map(dom, 0x100_0000, 0x2000, 0x1000, 3);
  const v = new WindowOrAddressSpace(
    new DmaWindowTable([{ cpuStart: 0, busStart: 0x8000_0000, size: 0x10_0000 }]),
    iommu.endpoint(dom),
    "typhoon",
  );
  const out = new DmaTranslation();
  for (let i = 0; i < 8; i++) v.translate(0x8000_0000 + i * 0x1000, 64, DMA_ACCESS_READ, out);
  v.translate(0x100_0010, 16, DMA_ACCESS_READ, out);
  assert.equal(out.gpa, 0x2010);
  assert.equal(iommu.stats.faults, 0);
  assert.throws(() => v.translate(0x200_0000, 16, DMA_ACCESS_READ, out), DmaFault);
  assert.equal(iommu.stats.faults, 1);
});
