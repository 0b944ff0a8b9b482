// The split driver's one-segment fast paths must behave exactly like the general path: same
// descriptor table, available ring, errors, used tokens and lengths, and (under a mapping DMA
// API) the same mappings made and ended. Raw: add()'s RawGpaDmaApi path, forced off with a
// RawGpaDmaApi subclass (the raw path takes only the exact class; the subclass has mapNumber, so
// its one-segment add is #addGeneral's mapped body), both against RawGpaDmaApi without
// mapNumber. Mapped: #addGeneral's mapped body and #takeUsed's fast completion (which unmaps as
// #release does) under swiotlb, with the device writing through the bounce slots, forced off by
// hiding `mapNumber` behind a wrapper (both serve DMA APIs with `mapNumber` only). Logged: the
// same swiotlb behind a wrapper that logs every map and unmap with its direction (swiotlb's own
// state does not show a readable buffer mapped FROM_DEVICE, an IOMMU's IOPTE would), with and
// without `mapNumber`.

import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  DirectDmaApi,
  type DmaApi,
  featureMask,
  GuestMemory,
  PackedDriverQueue,
  RawGpaDmaApi,
  SgList,
  SplitDriverQueue,
  SwiotlbDmaApi,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_VERSION_1,
  VirtqError,
} from "../../../src/mod.ts";
import { withoutMapNumber } from "../_without_map_number.ts";

class GeneralRawGpaDmaApi extends RawGpaDmaApi {}

const SIZE = 8, RING = 0x1000, POOL = 0x10_0000;

// raw: RawGpaDmaApi (fast: the exact class, add()'s raw path; else a subclass, which has
// mapNumber: #addGeneral's mapped body); raw-general: RawGpaDmaApi without mapNumber (the general path)
// swiotlb-logged: swiotlb behind logged(), which keeps mapNumber on the fast side only
type Kind = "raw" | "raw-general" | "swiotlb" | "swiotlb-logged";

/** `dma` with every map (`map` and `mapNumber` alike) and unmap pushed onto `log` with its direction. */
function logged(dma: DmaApi, log: unknown[], withMapNumber: boolean): DmaApi {
  const api: DmaApi = {
    name: dma.name,
    map: (g, n, d) => {
      const b = dma.map(g, n, d);
      log.push(["map", g, n, d, String(b)]);
      return b;
    },
    unmap: (b, n, d) => {
      log.push(["unmap", String(b), n, d]);
      dma.unmap(b, n, d);
    },
    syncForCpu: (b, n, d) => dma.syncForCpu(b, n, d),
    syncForDevice: (b, n, d) => dma.syncForDevice(b, n, d),
    mapCoherent: (g, n) => dma.mapCoherent(g, n),
    unmapCoherent: (b, n) => dma.unmapCoherent(b, n),
  };
  if (withMapNumber) {
    api.mapNumber = (g, n, d) => {
      const b = dma.mapNumber!(g, n, d);
      if (b >= 0) log.push(["map", g, n, d, String(b)]);
      return b;
    };
  }
  return api;
}

function rig(fast: boolean, features: bigint, kind: Kind = "raw") {
  const memory = new GuestMemory([
    { gpa: 0, size: 0x10000, name: "ram" },
    { gpa: POOL, size: 0x4000, name: "swiotlb" }, // 8 slots: exhaustion is reachable
  ]);
  const log: unknown[] = [];
  const sw = kind === "swiotlb" || kind === "swiotlb-logged"
    ? new SwiotlbDmaApi({ memory, poolGpa: POOL, poolSize: 0x4000, inner: new DirectDmaApi() })
    : null;
  const dma = sw
    ? (kind === "swiotlb-logged" ? logged(sw, log, fast) : fast ? sw : withoutMapNumber(sw))
    : kind === "raw-general"
    ? withoutMapNumber(new RawGpaDmaApi())
    : fast
    ? new RawGpaDmaApi()
    : new GeneralRawGpaDmaApi();
  const q = new SplitDriverQueue<number>({ memory, dma, size: SIZE, features, ringGpa: RING });
  const used = RING + q.placement.usedOffset;
  const ring = () => [
    Array.from(memory.view(RING, q.placement.usedOffset)),
    sw ? JSON.stringify([sw.stats, sw.usedSlots, Array.from(memory.view(0, 0x1000))]) : null,
    log.splice(0),
  ];
  /** Completes the oldest published buffer with length `len` (device side, by hand). */
  const complete = (len: number, seen: { avail: number; used: number }) => {
    const head = memory.dataView(RING + q.placement.availOffset + 4 + 2 * (seen.avail % SIZE), 2)
      .getUint16(0, true);
    seen.avail++;
    // the device writes the head descriptor's buffer when it is device-writable (through its bus
    // address: the bounce slot under swiotlb), so a copy-back of the wrong length shows
    const d = memory.dataView(RING + 16 * head, 16);
    if ((d.getUint16(12, true) & 2) !== 0) {
      try {
        memory.fill(
          Number(d.getBigUint64(0, true)),
          Math.min(len, d.getUint32(8, true)),
          seen.used + 1,
        );
      } catch { /* a hostile address: no write */ }
    }
    const v = memory.dataView(used, 4 + 8 * SIZE);
    v.setUint32(4 + 8 * (seen.used % SIZE), head, true);
    v.setUint32(8 + 8 * (seen.used % SIZE), len, true);
    v.setUint16(2, ++seen.used & 0xffff, true);
  };
  return { q, ring, complete, seen: { avail: 0, used: 0 } };
}

type Op =
  | { k: "add"; gpa: number; len: number; w: boolean }
  | { k: "use"; len: number }
  | { k: "get" };

const edgeGpa = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(-1, -0.5, 0.5, 2 ** 32 - 1, 2 ** 32, 2 ** 52 - 16, 2 ** 52, 2 ** 53, NaN),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("add" as const),
    gpa: edgeGpa,
    len: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(0, 16, 0xffff_ffff)),
    w: fc.boolean(),
  }),
  fc.record({ k: fc.constant("use" as const), len: fc.integer({ min: 0, max: 5000 }) }),
  fc.record({ k: fc.constant("get" as const) }),
);

// Mostly buffers swiotlb bounces through one slot and completions within capacity, so runs go
// on long enough to reuse descriptors and slots; hostile ones now and then.
const mappedOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("add" as const),
      gpa: fc.integer({ min: 0x2000, max: 0xe000 }),
      len: fc.integer({ min: 1, max: 2048 }),
      w: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("use" as const), len: fc.nat(64) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("get" as const) }) },
  { weight: 1, arbitrary: op },
);

function run(fast: boolean, features: bigint, ops: readonly Op[], kind: Kind = "raw"): unknown[] {
  const r = rig(fast, features, kind);
  const out: unknown[] = [];
  let tok = 0;
  for (const o of ops) {
    try {
      if (o.k === "add") {
        const seg = SgList.of();
        seg.push(o.gpa, o.len); // push() does not validate: hostile values reach add()
        if (o.w) r.q.add(SgList.of(), seg, tok++);
        else r.q.add(seg, SgList.of(), tok++);
        out.push("added", r.q.numFree, r.q.kick());
      } else if (o.k === "use") {
        if (r.seen.avail < r.q.availIdx) r.complete(o.len, r.seen);
        out.push("used");
      } else {
        const t = r.q.getUsed();
        out.push(t, t === undefined ? null : r.q.usedLen);
      }
    } catch (e) {
      out.push(e instanceof VirtqError ? `${e.code}:${e.message}` : String(e));
    }
    out.push(r.ring());
  }
  return out;
}

Deno.test("split add: the one-segment RawGpaDmaApi and mapped fast paths equal the general path", () => {
  for (
    const features of [
      featureMask(VIRTIO_F_VERSION_1),
      featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER),
      featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX),
    ]
  ) {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const general = run(false, features, ops, "raw-general");
        assertEquals(run(true, features, ops), general);
        assertEquals(run(false, features, ops), general);
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("split: the unmapping fast completion equals the general path under swiotlb", () => {
  for (
    const features of [
      featureMask(VIRTIO_F_VERSION_1),
      featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER),
      featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX),
    ]
  ) {
    fc.assert(
      fc.property(fc.array(mappedOp, { maxLength: 40 }), (ops) => {
        assertEquals(run(true, features, ops, "swiotlb"), run(false, features, ops, "swiotlb"));
        assertEquals(
          run(true, features, ops, "swiotlb-logged"),
          run(false, features, ops, "swiotlb-logged"),
        );
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("split add: the fast path refuses exactly what RawGpaDmaApi refuses", () => {
  const r = rig(true, featureMask(VIRTIO_F_VERSION_1));
  const seg = SgList.of();
  seg.push(2 ** 52 - 8, 16);
  let code = "";
  try {
    r.q.add(seg, SgList.of(), 1);
  } catch (e) {
    code = (e as VirtqError).code;
  }
  assertEquals(code, "DMA_MAP_FAILED");
  assertEquals(r.q.numFree, SIZE);
  seg.clear().push(0x2000, 0);
  try {
    r.q.add(SgList.of(), seg, 2);
  } catch (e) {
    code = (e as VirtqError).code;
  }
  assertEquals(code, "BUFFER_EMPTY");
  assertEquals(r.q.outstanding, 0);
});

Deno.test("split and packed add: a mapNumber answer of -1 is asked once, then map maps", () => {
  for (const layout of ["split", "packed"] as const) {
    const memory = GuestMemory.flat(0x40000);
    const calls: string[] = [];
    const dma = {
      ...withoutMapNumber(new RawGpaDmaApi()),
      map: (g: number, n: number) => (calls.push(`map ${g} ${n}`), BigInt(g) + (1n << 60n)),
      mapNumber: (g: number, n: number) => (calls.push(`mapNumber ${g} ${n}`), -1),
    };
    const opts = { memory, dma, size: 8, features: featureMask(VIRTIO_F_VERSION_1) };
    const q = layout === "split"
      ? new SplitDriverQueue<number>({ ...opts, ringGpa: 0x1000 })
      : new PackedDriverQueue<number>({ ...opts, ringGpa: 0x1000 });
    q.add(SgList.of(), SgList.of([0x8000, 64]), 1);
    assertEquals(calls, ["mapNumber 32768 64", "map 32768 64"], layout);
    // the descriptor holds map's exact 64-bit bus address
    assertEquals(memory.dataView(0x1000, 8).getBigUint64(0, true), 0x8000n + (1n << 60n));
  }
});
