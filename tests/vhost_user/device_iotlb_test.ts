// The device IOTLB feeder against a recording front-end (no FFI, no back-end): which IOTLB
// messages the project's DMA modes produce, and how misses are answered from the page tables.

import { assertEquals } from "@std/assert";
import { createDmaMode, FakeClock, GuestMemory } from "./_pure_exports.ts";
import {
  DeviceIotlbDmaApi,
  type SharedGuestMemory,
  VHOST_IOTLB_MISS,
  type VhostUserFrontend,
} from "../../src/vhost_user/mod.ts";

const GPA = 0x4000_0000, SIZE = 1 << 20, UADDR = 0x7f00_0000_0000n;

type Msg = [kind: "U" | "I", iova: number, size: number, uaddr: bigint, perm: number];

function rig(
  mode: "iommu-strict" | "iommu-lazy" | "iommu-identity",
  fill: "prefault" | "on-demand",
  opts: {
    writeImpliesRead?: boolean;
    shortInvalidate?: boolean;
  } = {},
) {
  const memory = new GuestMemory([{ gpa: GPA, size: SIZE }]);
  const clock = new FakeClock();
  const dma = createDmaMode(mode, memory, { clock, fqTimeoutMs: 10, fqSize: 256 });
  const sent: Msg[] = [];
  const fe = {
    onIotlbMiss: null,
    iotlbUpdate: (iova: bigint, size: bigint, uaddr: bigint, perm: number) =>
      sent.push(["U", Number(iova), Number(size), uaddr, perm]),
    iotlbInvalidate: (iova: bigint, size: bigint) =>
      sent.push(["I", Number(iova), Number(size), 0n, 0]),
  } as unknown as VhostUserFrontend;
  const region = { gpa: GPA, size: SIZE, fd: -1, userAddr: UADDR };
  const shared = {
    regions: [region],
    userAddrOf: (g: number) => g >= GPA && g < GPA + SIZE ? UADDR + BigInt(g - GPA) : -1n,
    regionOf: (g: number) => g >= GPA && g < GPA + SIZE ? region : undefined,
  } as unknown as SharedGuestMemory;
  const api = new DeviceIotlbDmaApi(
    fe,
    shared,
    dma,
    fill,
    opts.writeImpliesRead ?? true,
    opts.shortInvalidate ?? false,
  );
  return { api, sent, clock, fe };
}

const miss = (iova: number, perm: number) => ({
  iova: BigInt(iova),
  size: 0n,
  uaddr: 0n,
  perm,
  type: VHOST_IOTLB_MISS,
});

Deno.test("device IOTLB: prefault pushes UPDATE per map; strict INVALIDATEs at unmap", () => {
  const { api, sent } = rig("iommu-strict", "prefault");
  const bus = api.map(GPA + 0x2100, 200, 1) as number; // to-device: read-only
  assertEquals(sent, [["U", bus - 0x100, 4096, UADDR + 0x2000n, 1]]);
  api.unmap(bus, 200, 1);
  assertEquals(sent[1], ["I", bus - 0x100, 4096, 0n, 0]);
  const w = api.map(GPA + 0x3000, 4096, 2) as number; // from-device: writable (+ read, no ZLR)
  assertEquals(sent[2], ["U", w, 4096, UADDR + 0x3000n, 3]);
  assertEquals(api.stats, { updates: 2, invalidates: 1, misses: 0, unserved: 0 });
});

Deno.test("device IOTLB: lazy INVALIDATEs only when the flush queue flushes", () => {
  const { api, sent, clock } = rig("iommu-lazy", "on-demand");
  const a = api.map(GPA, 4096, 2) as number;
  const b = api.map(GPA + 0x8000, 8192, 1) as number;
  api.unmap(a, 4096, 2);
  api.unmap(b, 8192, 1);
  assertEquals(sent, [], "on-demand, nothing flushed yet: the stale window is open");
  assertEquals(api.pendingInvalidations().length, 2);
  clock.advance(11);
  api.tick();
  assertEquals(sent, [["I", a, 4096, 0n, 0], ["I", b, 8192, 0n, 0]]);
  assertEquals(api.pendingInvalidations().length, 0);
});

Deno.test("device IOTLB: a miss is answered by walking the page table, with its permission", () => {
  const { api, sent } = rig("iommu-strict", "on-demand");
  const r = api.map(GPA + 0x5000, 4096, 1) as number;
  const w = api.map(GPA + 0x6000, 4096, 2) as number;
  assertEquals(api.serveMiss(miss(r + 0x10, 1)), 0n);
  assertEquals(sent[0], ["U", r, 4096, UADDR + 0x5000n, 1]);
  assertEquals(api.serveMiss(miss(r, 3)), 1n, "write asked on a to-device page: not served");
  assertEquals(api.serveMiss(miss(w, 3)), 0n, "RW on a from-device page: read implied");
  assertEquals(sent[1], ["U", w, 4096, UADDR + 0x6000n, 3]);
  assertEquals(api.serveMiss(miss(0x1234_5000, 1)), 1n, "never mapped: not served");
  assertEquals(api.stats.misses, 4);
  assertEquals(api.stats.unserved, 2);
});

Deno.test("device IOTLB: without write-implies-read, RW on a from-device page is refused", () => {
  const { api } = rig("iommu-strict", "on-demand", { writeImpliesRead: false });
  const w = api.map(GPA + 0x6000, 4096, 2) as number;
  assertEquals(api.serveMiss(miss(w, 3)), 1n);
  assertEquals(api.serveMiss(miss(w, 2)), 0n);
});

Deno.test("device IOTLB: short INVALIDATE covers the range minus its last byte", () => {
  const { api, sent } = rig("iommu-strict", "on-demand", { shortInvalidate: true });
  const a = api.map(GPA, 4096, 1) as number;
  api.unmap(a, 4096, 1);
  assertEquals(sent, [["I", a, 4095, 0n, 0]]);
});

Deno.test("device IOTLB: pass-through answers a miss with the whole region, once", () => {
  const { api, sent } = rig("iommu-identity", "on-demand");
  assertEquals(api.serveMiss(miss(GPA + 0x7123, 3)), 0n);
  assertEquals(sent, [["U", GPA + 0x7000, SIZE - 0x7000, UADDR + 0x7000n, 3]]);
  assertEquals(api.serveMiss(miss(0x10, 1)), 1n, "outside guest RAM");
});
