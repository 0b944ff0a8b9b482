/**
 * Test helper: a DMA API with every call of `dma` but `mapNumber` (and `unmapPage`), so a ring
 * driver over it takes its general add path: the reference the mapped fast paths are compared to.
 * @module
 */

import type { DmaApi } from "../../src/mod.ts";

/** `dma` without `mapNumber`: every add takes the driver's general path. */
export function withoutMapNumber(dma: DmaApi): DmaApi {
  return {
    name: dma.name,
    map: (g, n, d) => dma.map(g, n, d),
    unmap: (b, n, d) => dma.unmap(b, n, d),
    syncForCpu: (b, n, d) => dma.syncForCpu(b, n, d),
    syncForDevice: (b, n, d) => dma.syncForDevice(b, n, d),
    mapCoherent: (g, n) => dma.mapCoherent(g, n),
    unmapCoherent: (b, n) => dma.unmapCoherent(b, n),
  };
}
