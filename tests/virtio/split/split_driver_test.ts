import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  createQueuePair,
  type DmaApi,
  type DmaDirection,
  featureMask,
  GuestMemory,
  isVirtqError,
  MemoryFault,
  RawGpaDmaApi,
  SgList,
  SplitDriverQueue,
  type U64,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VirtqError,
  type VirtqErrorCode,
} from "../../../src/mod.ts";

const V1 = featureMask(VIRTIO_F_VERSION_1);

function catchVirtq(f: () => unknown): VirtqError {
  const e = assertThrows(f);
  assert(e instanceof VirtqError, `expected VirtqError, got ${e}`);
  return e;
}

/** A pair whose device side the test plays by writing the used ring by hand. */
function hostile(size = 8, features = V1, policy = {}) {
  const p = createQueuePair<number>({ size, features, driverPolicy: policy });
  const drv = p.driver as SplitDriverQueue<number>;
  const used = drv.ringGpa + drv.placement.usedOffset;
  const d = p.dataGpa;
  return {
    p,
    drv,
    d,
    /** Writes used element `slot` and publishes used idx `idx`. */
    use(slot: number, id: number, len: number, idx: number) {
      p.memory.writeU32(used + 4 + 8 * (slot % size), id);
      p.memory.writeU32(used + 8 + 8 * (slot % size), len);
      p.memory.writeU16(used + 2, idx);
    },
    add(t: number, nr = 1, nw = 1) {
      const r = new SgList(), w = new SgList();
      for (let i = 0; i < nr; i++) r.push(d + t * 256 + i * 16, 16);
      for (let i = 0; i < nw; i++) w.push(d + 0x8000 + t * 256 + i * 16, 16);
      drv.add(r, w, t);
    },
  };
}

/**
 * Token 0 completes normally first; then `attack` misbehaves. Asserts the exact code, broken
 * state, later getUsed undefined, add refused with QUEUE_BROKEN, and no token returned twice.
 */
function expectBreak(
  code: VirtqErrorCode,
  attack: (h: ReturnType<typeof hostile>) => void,
  policy = {},
) {
  const h = hostile(8, V1, policy);
  h.add(0);
  h.add(1, 2, 1); // head 2, 3 descriptors (2..4)
  h.drv.kick();
  h.use(0, 0, 16, 1);
  assertEquals(h.drv.getUsed(), 0);
  attack(h);
  const e = catchVirtq(() => {
    for (let i = 0; i < 4; i++) h.drv.getUsed();
  });
  assertEquals(e.code, code, e.message);
  assertEquals(e.side, "driver");
  assertEquals(h.drv.broken, e);
  assertEquals(h.drv.getUsed(), undefined);
  assertEquals(catchVirtq(() => h.add(5)).code, "QUEUE_BROKEN");
  return { e, h };
}

Deno.test("driver: USED_ID_OUT_OF_RANGE (#38)", () => {
  const { e } = expectBreak("USED_ID_OUT_OF_RANGE", (h) => h.use(1, 8, 0, 2));
  assertEquals(e.index, 8);
});

Deno.test("driver: USED_ID_NOT_HEAD: mid-chain id, never-issued id, duplicate (#39)", () => {
  expectBreak("USED_ID_NOT_HEAD", (h) => h.use(1, 3, 0, 2)); // 3 is inside chain 2..4
  expectBreak("USED_ID_NOT_HEAD", (h) => h.use(1, 6, 0, 2)); // never issued
  expectBreak("USED_ID_NOT_HEAD", (h) => h.use(1, 0, 0, 2)); // token 0 already returned
});

Deno.test("driver: USED_LEN_EXCEEDS_CAPACITY rejected by default; clamp policy (#40)", () => {
  expectBreak("USED_LEN_EXCEEDS_CAPACITY", (h) => h.use(1, 2, 17, 2));
  const h = hostile(8, V1, { usedLenExceedsCapacity: "clamp" });
  h.add(0, 1, 2);
  h.drv.kick();
  h.use(0, 0, 0xffff_ffff, 1);
  assertEquals(h.drv.getUsed(), 0);
  assertEquals(h.drv.usedLen, 32);
  assertEquals(h.drv.broken, null);
});

Deno.test("driver: USED_IDX_JUMP: idx beyond outstanding, and beyond what was kicked (#41)", () => {
  expectBreak("USED_IDX_JUMP", (h) => h.use(1, 2, 0, 3));
  expectBreak("USED_IDX_JUMP", (h) => {
    h.add(6); // added, not kicked: the device cannot have seen it
    h.use(1, 2, 0, 3);
  });
});

Deno.test("driver: a device rewriting the descriptor table cannot corrupt unmap/free (#42)", () => {
  class Tracking implements DmaApi {
    readonly name = "tracking";
    readonly live = new Set<string>();
    readonly inner = new RawGpaDmaApi();
    map(gpa: number, len: number, dir: DmaDirection): U64 {
      const k = `${gpa}:${len}:${dir}`;
      assert(!this.live.has(k));
      this.live.add(k);
      return gpa;
    }
    unmap(bus: U64, len: number, dir: DmaDirection): void {
      const k = `${bus}:${len}:${dir}`;
      if (!this.live.delete(k)) throw new Error(`unmap of unmapped ${k}`);
    }
    syncForCpu(): void {}
    syncForDevice(): void {}
    mapCoherent(g: number, n: number): U64 {
      return g + n * 0;
    }
    unmapCoherent(): void {}
  }
  const dma = new Tracking();
  const p = createQueuePair<number>({ size: 8, features: V1, dmaApi: dma });
  const drv = p.driver as SplitDriverQueue<number>;
  const d = p.dataGpa;
  drv.add(SgList.of([d, 16], [d + 16, 16]), SgList.of([d + 64, 16]), 1);
  drv.kick();
  // Hostile device scribbles over the whole descriptor table (addr/len/flags/next).
  p.memory.fill(drv.ringGpa, 16 * 8, 0xff);
  const used = drv.ringGpa + drv.placement.usedOffset;
  p.memory.writeU32(used + 4, 0);
  p.memory.writeU32(used + 8, 16);
  p.memory.writeU16(used + 2, 1);
  assertEquals(drv.getUsed(), 1);
  assertEquals(dma.live.size, 0);
  assertEquals(drv.numFree, 8);
  // The free list is intact: the whole ring can be used again.
  for (let i = 0; i < 8; i++) drv.add(SgList.of([d + i * 16, 16]), new SgList(0), i);
  assertEquals(drv.numFree, 0);
});

Deno.test("driver: IN_ORDER batch from a hostile device returns each token once", () => {
  const f = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER);
  const h = hostile(8, f);
  for (let t = 0; t < 3; t++) h.add(t); // heads 0, 2, 4
  h.drv.kick();
  h.use(0, 4, 7, 3); // one element for the batch, id of the last
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [0, 16]);
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [1, 16]);
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [2, 7]);
  assertEquals(h.drv.getUsed(), undefined);
  // A second element naming an already-returned head is refused.
  h.add(3);
  h.drv.kick();
  h.use(3, 2, 0, 4);
  assertEquals(catchVirtq(() => h.drv.getUsed()).code, "USED_ID_NOT_HEAD");
});

Deno.test("driver: IN_ORDER tolerance: intermediate used elements of a batch are not read", () => {
  // §2.7.8: one used element per batch is enough; the slots in between may hold anything.
  const f = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER);
  const h = hostile(8, f);
  for (let t = 0; t < 3; t++) h.add(t); // heads 0, 2, 4
  h.drv.kick();
  h.use(1, 999, 0xffff_ffff, 0); // garbage in the batch's second slot (out-of-range id, huge len)
  h.use(2, 7, 1, 0); // and in its third (a non-head)
  h.use(0, 4, 7, 3); // the batch's one element names its last buffer; idx + 3
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [0, 16]);
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [1, 16]);
  assertEquals([h.drv.getUsed(), h.drv.usedLen], [2, 7]);
  assertEquals([h.drv.getUsed(), h.drv.broken], [undefined, null]);
});

Deno.test("driver: detachUnused after reset returns every outstanding token once, unmapped", () => {
  const p = createQueuePair<number>({
    size: 8,
    features: featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC),
    driverPolicy: { indirect: "always" },
  });
  const drv = p.driver as SplitDriverQueue<number>;
  const d = p.dataGpa;
  for (let t = 0; t < 5; t++) drv.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), t);
  drv.kick();
  p.device.reset();
  const got: number[] = [];
  for (let t = drv.detachUnused(); t !== undefined; t = drv.detachUnused()) got.push(t);
  assertEquals(got.sort(), [0, 1, 2, 3, 4]);
  assertEquals([drv.outstanding, drv.numFree], [0, 8]);
  drv.resetRings();
  p.device.activate();
  drv.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 9);
  drv.kick();
  const c = p.device.pop()!;
  assertEquals(c.id, 0);
  p.device.push(c, c.copyReadableToWritable());
  p.device.flush();
  assertEquals(drv.getUsed(), 9);
});

Deno.test("driver: add errors: BUFFER_EMPTY, RING_FULL; construction errors", () => {
  const h = hostile(2);
  assertEquals(catchVirtq(() => h.drv.add(new SgList(0), new SgList(0), 1)).code, "BUFFER_EMPTY");
  assertEquals(
    catchVirtq(() => h.drv.add(SgList.of([h.d, 0]), new SgList(0), 1)).code,
    "BUFFER_EMPTY",
  );
  assertEquals(catchVirtq(() => h.add(1, 2, 1)).code, "RING_FULL");
  assertEquals([h.drv.numFree, h.drv.outstanding, h.drv.broken], [2, 0, null]);
  const memory = GuestMemory.flat(0x4000);
  const mk = (size: number, ringGpa: number) =>
    new SplitDriverQueue({ memory, dma: new RawGpaDmaApi(), size, features: V1, ringGpa });
  assertEquals(catchVirtq(() => mk(6, 0)).code, "QUEUE_SIZE_INVALID");
  assertEquals(catchVirtq(() => mk(8, 8)).code, "RING_MISALIGNED");
  const un = catchVirtq(() => mk(1024, 0));
  assertEquals(un.code, "RING_UNMAPPED");
  assert(un.cause instanceof MemoryFault);
  assert(isVirtqError(un));
});

Deno.test("driver: one-descriptor completions (getUsed's fast path) break as the general path", () => {
  // Every chain here is one descriptor under RawGpaDmaApi without IN_ORDER, the chains getUsed
  // completes on its small fast path; each hostile element must still get its own code.
  const one = (attack: (h: ReturnType<typeof hostile>) => void, policy = {}) => {
    const h = hostile(8, V1, policy);
    h.add(0, 0, 1); // head 0, device-writable, 16 bytes
    h.add(1, 1, 0); // head 1, device-readable
    h.add(2, 0, 1); // head 2
    h.drv.kick();
    h.use(0, 0, 16, 1);
    assertEquals(h.drv.getUsed(), 0);
    assertEquals(h.drv.usedLen, 16);
    attack(h);
    return h;
  };
  const code = (attack: (h: ReturnType<typeof hostile>) => void, policy = {}) => {
    const h = one(attack, policy);
    const e = catchVirtq(() => h.drv.getUsed());
    assertEquals(h.drv.broken, e);
    assertEquals(h.drv.getUsed(), undefined);
    return e.code;
  };
  // a valid element for head 1, but used idx three ahead with two buffers exposed
  assertEquals(code((h) => h.use(1, 1, 0, 4)), "USED_IDX_JUMP");
  // ...and one ahead of what was kicked (head 3 added, not published)
  assertEquals(
    code((h) => {
      h.add(3, 0, 1);
      h.use(1, 1, 0, 2);
      assertEquals(h.drv.getUsed(), 1);
      h.use(2, 2, 0, 3);
      assertEquals(h.drv.getUsed(), 2);
      h.use(3, 3, 0, 4); // a valid element for head 3, which the device was never shown
    }),
    "USED_IDX_JUMP",
  );
  assertEquals(code((h) => h.use(1, 8, 0, 2)), "USED_ID_OUT_OF_RANGE");
  assertEquals(code((h) => h.use(1, 0xffffffff, 0, 2)), "USED_ID_OUT_OF_RANGE");
  assertEquals(code((h) => h.use(1, 0, 0, 2)), "USED_ID_NOT_HEAD"); // 0 already returned
  assertEquals(code((h) => h.use(1, 5, 0, 2)), "USED_ID_NOT_HEAD"); // never issued
  assertEquals(code((h) => h.use(1, 2, 17, 2)), "USED_LEN_EXCEEDS_CAPACITY");
  // the device-readable buffer has no writable capacity: any written length exceeds it
  assertEquals(code((h) => h.use(1, 1, 1, 2)), "USED_LEN_EXCEEDS_CAPACITY");
  // clamp policy: the length is cut to the capacity, the queue stays usable
  const c = one((h) => h.use(1, 2, 17, 2), { usedLenExceedsCapacity: "clamp" });
  assertEquals(c.drv.getUsed(), 2);
  assertEquals(c.drv.usedLen, 16);
  assertEquals(c.drv.broken, null);
  // a valid completion frees exactly one descriptor, reused by the next add
  const h = one((h) => h.use(1, 2, 3, 2));
  const free = h.drv.numFree;
  assertEquals(h.drv.getUsed(), 2);
  assertEquals(h.drv.usedLen, 3);
  assertEquals(h.drv.numFree, free + 1);
  assertEquals(h.drv.outstanding, 1);
});
