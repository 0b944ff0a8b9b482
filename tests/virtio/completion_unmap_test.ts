// Every completion unmaps exactly what its add mapped. For each ring layout and each DMA mode
// createDmaMode builds (bus addresses below and above 2^31, in windows, at 2^63 as bigints,
// bounced, behind an IOMMU with `unmapPage`), the driver's DMA API is wrapped in a recorder: the
// unmap calls made while `getUsed` returns a buffer, as (bus address, length, direction), with
// `unmapPage(pfn, offset, ...)` read as bus address pfn * 4096 + offset, must equal the map calls
// made while that buffer was added. The completion's fast paths (one direct descriptor at a
// number bus address, packed `#unmapHead`, split `#unmapOne`) and the general ones are both
// reached: one-segment buffers, lists, indirect tables, IN_ORDER.

import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  createDeviceQueue,
  createDmaLab,
  createDriverQueue,
  DMA_MODE_NAMES,
  type DmaApi,
  type DmaDirection,
  featureMask,
  hasUnmapPage,
  SgList,
  type U64,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
} from "../../src/mod.ts";

const SIZE = 8;

/** `api` with every map and unmap written to `log` as "map|unmap bus len dir" (bus as bigint). */
function recorder(api: DmaApi, log: string[]): DmaApi {
  const key = (op: string, bus: U64, len: number, dir: DmaDirection) =>
    `${op} ${BigInt(bus)} ${len} ${dir}`;
  const rec: DmaApi = {
    name: api.name,
    map(gpa, len, dir) {
      const b = api.map(gpa, len, dir);
      log.push(key("map", b, len, dir));
      return b;
    },
    unmap(bus, len, dir) {
      log.push(key("unmap", bus, len, dir));
      api.unmap(bus, len, dir);
    },
    syncForCpu: (b, n, d) => api.syncForCpu(b, n, d),
    syncForDevice: (b, n, d) => api.syncForDevice(b, n, d),
    mapCoherent: (g, n) => api.mapCoherent(g, n),
    unmapCoherent: (b, n) => api.unmapCoherent(b, n),
  };
  if (api.mapNumber) {
    rec.mapNumber = (gpa, len, dir) => {
      const b = api.mapNumber!(gpa, len, dir);
      if (b >= 0) log.push(key("map", b, len, dir));
      return b;
    };
  }
  if (hasUnmapPage(api)) {
    rec.unmapPage = (pfn, offset, len, dir) => {
      log.push(key("unmap", pfn * 4096 + offset, len, dir));
      api.unmapPage!(pfn, offset, len, dir);
    };
  }
  return rec;
}

type Buf = { segs: [number, number][]; w: number };
const buf: fc.Arbitrary<Buf> = fc.record({
  segs: fc.oneof(
    {
      weight: 3,
      arbitrary: fc.array(fc.tuple(fc.nat(60), fc.integer({ min: 1, max: 3000 })), {
        minLength: 1,
        maxLength: 1,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.array(fc.tuple(fc.nat(60), fc.integer({ min: 1, max: 3000 })), {
        minLength: 2,
        maxLength: 4,
      }),
    },
  ),
  w: fc.nat(4), // how many segments, from the end, are device-writable
});

function run(layout: "split" | "packed", mode: string, features: bigint, rounds: Buf[][]): void {
  const lab = createDmaLab(mode as typeof DMA_MODE_NAMES[number], {
    bufferSize: 1 << 20,
    ringSize: 1 << 16,
    poolSize: 1 << 20,
  });
  const log: string[] = [];
  const drv = createDriverQueue<number>(layout, {
    memory: lab.memory,
    dma: recorder(lab.mode.api, log),
    size: SIZE,
    features,
    ringGpa: lab.ringGpa,
  });
  const dev = createDeviceQueue(layout, {
    memory: lab.memory,
    dma: lab.mode.space,
    size: SIZE,
    addresses: drv.addresses,
    features,
  });
  const maps = new Map<number, string[]>();
  let token = 0;
  for (const bufs of rounds) {
    for (const b of bufs) {
      const n = b.segs.length, w = Math.min(b.w, n);
      const r = SgList.of(), wr = SgList.of();
      b.segs.forEach(([page, len], i) =>
        (i < n - w ? r : wr).push(lab.bufferGpa + page * 4096 + 8 * i, len)
      );
      log.length = 0;
      try {
        drv.add(r, wr, token);
      } catch {
        continue; // RING_FULL: nothing mapped is kept
      }
      maps.set(token++, log.map((x) => x.slice(4)).sort());
    }
    drv.kick();
    for (let c = dev.pop(); c !== null; c = dev.pop()) dev.push(c, c.writableBytes);
    dev.flush();
    for (;;) {
      log.length = 0;
      const t = drv.getUsed();
      if (t === undefined) break;
      const unmaps = log.map((x) => x.slice(6)).sort();
      assertEquals(unmaps, maps.get(t), `${layout}/${mode}: token ${t}'s unmaps`);
      maps.delete(t);
    }
  }
  assertEquals(maps.size, 0, `${layout}/${mode}: every buffer completed`);
}

Deno.test("virtio drivers: every completion unmaps exactly its add's mappings, in every DMA mode", () => {
  for (const layout of ["split", "packed"] as const) {
    for (const mode of DMA_MODE_NAMES) {
      for (
        const features of [
          featureMask(),
          featureMask(VIRTIO_F_INDIRECT_DESC),
          featureMask(VIRTIO_F_IN_ORDER),
        ]
      ) {
        fc.assert(
          fc.property(
            fc.array(fc.array(buf, { maxLength: SIZE }), { minLength: 1, maxLength: 4 }),
            (rounds) => run(layout, mode, features, rounds),
          ),
          { numRuns: 15 },
        );
      }
    }
  }
});
