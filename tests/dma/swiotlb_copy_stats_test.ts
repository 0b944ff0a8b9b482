// swiotlb's one-slot fast paths copy with the store's routines (backing.ts: the SIMD small copy
// below 128 B at any alignment, memmove above) when the original lies on the pool's store apart
// from the pool; its counters live in the API and `stats` is a live view of them. Known answers:
// the exact bytes each copy moves (every length and alignment edge), and the exact counters.
import { assertEquals } from "@std/assert";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import { backingSmallCopier, createCopyableBacking } from "../../src/memory/backing.ts";
import { DirectDmaApi } from "../../src/dma/direct_api.ts";
import { SwiotlbDmaApi } from "../../src/dma/swiotlb.ts";
import type { DmaDirection } from "../../src/dma/types.ts";

const BUF = 0x1_0000; // buffers [0, 64 KiB), the pool [64 KiB, +64 KiB), on one store
const POOL = 0x1_0000;

function world() {
  const backing = createCopyableBacking(BUF + POOL);
  if (backing === null) throw new Error("no WebAssembly store");
  const memory = new GuestMemory([
    { gpa: 0, size: BUF, name: "buffers", backing },
    { gpa: BUF, size: POOL, name: "swiotlb", backing, backingOffset: BUF },
  ]);
  const b = memory.view(0, BUF);
  for (let i = 0; i < BUF; i++) b[i] = (i * 7 + 3) & 0xff;
  const api = new SwiotlbDmaApi({
    memory,
    poolGpa: BUF,
    poolSize: POOL,
    inner: new DirectDmaApi(),
  });
  return { memory, api, small: backingSmallCopier(backing) !== null };
}

const LENGTHS = [1, 2, 3, 4, 5, 7, 61, 63, 64, 65, 126, 127, 128, 129, 1499, 1500, 2047, 2048];

Deno.test("swiotlb one-slot bounce: map copies exactly the buffer in, unmap exactly back out", () => {
  const { memory, api, small } = world();
  assertEquals(small, true, "the store has its small-copy routine (WebAssembly SIMD)");
  // a first map on the general path caches the buffers' region: mapNumber then answers
  api.unmap(api.map(0, 4, 1), 4, 1);
  let gpa = 0x100;
  for (const len of LENGTHS) {
    for (const misalign of [0, 1, 2, 3]) {
      const g = gpa + misalign;
      gpa += 4096;
      if (gpa + 4096 > BUF) gpa = 0x100;
      for (const dir of [0, 1, 2] as DmaDirection[]) {
        const before = memory.view(0, BUF).slice();
        const bus = api.mapNumber(g, len, dir);
        const at = `len ${len} gpa 0x${g.toString(16)} dir ${dir}`;
        assertEquals(bus >= BUF && bus < BUF + POOL, true, `fast path mapped (${at})`);
        // the slot holds the buffer's bytes, exactly
        assertEquals(memory.view(bus, len), before.subarray(g, g + len), `slot (${at})`);
        // the device writes the whole slot (past the mapping too)
        memory.fill(bus, 2048, 0xa5);
        api.unmap(bus, len, dir);
        const after = memory.view(0, BUF);
        const want = before.slice();
        if (dir !== 1) want.fill(0xa5, g, g + len); // copied back for FROM_DEVICE/BIDIRECTIONAL
        assertEquals(after, want, `original after unmap (${at})`);
        memory.view(0, BUF).set(before); // restore for the next case
      }
    }
  }
  assertEquals(api.usedSlots, 0);
});

Deno.test("swiotlb stats: a live view of the counters (exact values, JSON, assignment)", () => {
  const { api } = world();
  const s = api.stats;
  assertEquals(
    JSON.stringify(s),
    '{"bounced":0,"direct":0,"bytesToSlot":0,"bytesFromSlot":0,"exhausted":0,"highWater":0}',
  );
  const a = api.map(0x100, 64, 2) as number; // one slot, fast path
  const b = api.mapNumber(0x1000, 1500, 0); // one slot, fast path
  const c = api.map(0x2001, 5000, 1) as number; // three slots, general path
  assertEquals([s.bounced, s.bytesToSlot, s.highWater, api.usedSlots], [3, 6564, 5, 5]);
  api.unmap(a, 64, 2); // copies 64 back
  api.unmap(b, 1000, 0); // copies 1000 back
  api.unmap(c, 5000, 1); // TO_DEVICE: nothing back
  assertEquals([s.bytesFromSlot, s.highWater, api.usedSlots], [1064, 5, 0]);
  // the same object, still live
  assertEquals(api.stats === s, true);
  assertEquals({ ...s }, {
    bounced: 3,
    direct: 0,
    bytesToSlot: 6564,
    bytesFromSlot: 1064,
    exhausted: 0,
    highWater: 5,
  });
  // assignment sets the counter the paths then count on from
  s.bounced = 0;
  s.highWater = 0;
  s.bytesToSlot = 10;
  const d = api.mapNumber(0x3000, 100, 2);
  assertEquals([s.bounced, s.highWater, s.bytesToSlot], [1, 1, 110]);
  api.unmap(d, 100, 2);
  // exhaustion is counted
  for (let i = 0; i < 32; i++) api.map(i * 2048, 2048, 1);
  let refused = 0;
  try {
    api.map(0, 64, 1);
  } catch {
    refused++;
  }
  assertEquals([refused, s.exhausted, s.highWater], [1, 1, 32]);
  assertEquals(Object.keys(s), [
    "bounced",
    "direct",
    "bytesToSlot",
    "bytesFromSlot",
    "exhausted",
    "highWater",
  ]);
});
