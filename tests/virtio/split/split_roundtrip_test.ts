import { assert, assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import {
  type Chain,
  createQueuePair,
  type DmaApi,
  type DmaDirection,
  DmaMapError,
  featureMask,
  isVirtqError,
  LoopbackDevice,
  RawGpaDmaApi,
  SgList,
  type SplitDeviceQueue,
  type U64,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from "../../../src/mod.ts";

const V1 = featureMask(VIRTIO_F_VERSION_1);
const IND = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC);
const EVT = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX);

function fillPattern(
  mem: { write(g: number, b: Uint8Array): void },
  gpa: number,
  n: number,
  s: number,
) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (s + i * 7) & 0xff;
  mem.write(gpa, b);
  return b;
}

Deno.test("split round trip: direct chain, loopback copies bytes, used len exact", () => {
  const p = createQueuePair<string>({ size: 8, features: V1 });
  const d = p.dataGpa;
  const src = fillPattern(p.memory, d, 100, 3);
  p.driver.add(SgList.of([d, 60], [d + 60, 40]), SgList.of([d + 4096, 30], [d + 8192, 100]), "a");
  assertEquals(p.driver.numFree, 4);
  assertEquals(p.driver.kick(), true);
  const dev = new LoopbackDevice(p.device);
  assertEquals(dev.process(), 1);
  assertEquals(dev.notifications, 1);
  assertEquals(p.driver.getUsed(), "a");
  assertEquals(p.driver.usedLen, 100);
  assertEquals(p.driver.numFree, 8);
  assertEquals(p.driver.outstanding, 0);
  const out = new Uint8Array(100);
  p.memory.read(d + 4096, out.subarray(0, 30));
  p.memory.read(d + 8192, out.subarray(30, 100));
  assertEquals(out, src);
  assertEquals(p.driver.getUsed(), undefined);
});

Deno.test("split round trip: indirect (policy always) and mixed direct/indirect", () => {
  const p = createQueuePair<number>({
    size: 4,
    features: IND,
    driverPolicy: { indirect: "always" },
  });
  const d = p.dataGpa;
  fillPattern(p.memory, d, 64, 1);
  p.driver.add(SgList.of([d, 32], [d + 32, 32]), SgList.of([d + 256, 16], [d + 512, 48]), 1);
  assertEquals(p.driver.numFree, 3);
  p.driver.add(SgList.of([d, 8]), SgList.of([d + 1024, 8]), 2); // 2 segments: indirect too
  p.driver.add(SgList.of([d, 8]), new SgList(0), 3); // 1 segment: direct
  p.driver.kick();
  const c1 = p.device.pop()!;
  assertEquals(c1.indirect, true);
  assertEquals([c1.readableBytes, c1.writableBytes, c1.descCount], [64, 64, 5]);
  p.device.push(c1, c1.copyReadableToWritable());
  const c2 = p.device.pop()!;
  assertEquals(c2.indirect, true);
  p.device.push(c2, c2.copyReadableToWritable());
  const c3 = p.device.pop()!;
  assertEquals(c3.indirect, false);
  p.device.push(c3, 0);
  p.device.flush();
  assertEquals([p.driver.getUsed(), p.driver.usedLen], [1, 64]);
  assertEquals([p.driver.getUsed(), p.driver.usedLen], [2, 8]);
  assertEquals([p.driver.getUsed(), p.driver.usedLen], [3, 0]);
  assertEquals(p.memory.readU8(d + 512 + 47), (1 + 63 * 7) & 0xff);
  assertEquals(p.driver.numFree, 4);
});

Deno.test("split round trip: auto indirect only when the ring lacks room", () => {
  const p = createQueuePair<number>({ size: 4, features: IND });
  const d = p.dataGpa;
  p.driver.add(SgList.of([d, 8], [d + 8, 8]), SgList.of([d + 64, 16]), 1); // direct, 3 descs
  assertEquals(p.driver.numFree, 1);
  p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 16]), 2); // 2 segs, 1 free: indirect
  assertEquals(p.driver.numFree, 0);
  const e = assertThrows(() => p.driver.add(SgList.of([d, 8]), new SgList(0), 3));
  assert(isVirtqError(e, "RING_FULL"));
  p.driver.kick();
  const a = p.device.pop()!, b = p.device.pop()!;
  assertEquals([a.indirect, b.indirect], [false, true]);
});

Deno.test("split round trip: 70000 chains wrap the u16 ring indices", () => {
  const p = createQueuePair<number>({ size: 2, features: V1 });
  const d = p.dataGpa;
  const dev = new LoopbackDevice(p.device);
  for (let i = 0; i < 70000; i++) {
    p.memory.writeU8(d, i & 0xff);
    p.driver.add(SgList.of([d, 1]), SgList.of([d + 16, 1]), i);
    p.driver.kick();
    dev.process();
    assertEquals(p.driver.getUsed(), i);
    if (p.memory.readU8(d + 16) !== (i & 0xff)) throw new Error(`byte mismatch at ${i}`);
  }
  assertEquals(dev.completed, 70000);
});

Deno.test("split round trip: IN_ORDER batches one used element for fully written runs", () => {
  const f = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_IN_ORDER);
  const p = createQueuePair<number>({ size: 16, features: f });
  const d = p.dataGpa;
  for (let i = 0; i < 5; i++) {
    p.driver.add(SgList.of([d + i * 16, 8]), SgList.of([d + 4096 + i * 16, i === 2 ? 4 : 8]), i);
  }
  p.driver.kick();
  const chains: Chain[] = [];
  for (let i = 0; i < 5; i++) chains.push(p.device.pop()!);
  assertEquals(chains.map((c) => c.id), [0, 2, 4, 6, 8]);
  // Out-of-order push is refused under IN_ORDER.
  assert(isVirtqError(assertThrows(() => p.device.push(chains[1], 0)), "PUSH_INVALID"));
  // 0 full, 1 full, 2 short (written 3 of 4) -> element for run [0..2]; 3 full, 4 short -> [3..4]
  p.device.push(chains[0], 8);
  p.device.push(chains[1], 8);
  p.device.push(chains[2], 3);
  p.device.push(chains[3], 8);
  p.device.push(chains[4], 5);
  p.device.flush();
  // Two used elements were written, used idx advanced by 5.
  const dq = p.device as SplitDeviceQueue;
  assertEquals(dq.usedIdx, 5);
  const got: [number, number][] = [];
  for (let t = p.driver.getUsed(); t !== undefined; t = p.driver.getUsed()) {
    got.push([t, p.driver.usedLen]);
  }
  assertEquals(got, [[0, 8], [1, 8], [2, 3], [3, 8], [4, 5]]);
  assertEquals(p.driver.numFree, 16);
  // The freed descriptors keep ring order: the next chains start at 10, 12, 14 and wrap to 0.
  for (let i = 0; i < 4; i++) p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 9);
  p.driver.kick();
  assertEquals([0, 1, 2, 3].map(() => p.device.pop()!.id), [10, 12, 14, 0]);
});

Deno.test("split notifications: flags without EVENT_IDX", () => {
  const p = createQueuePair<number>({ size: 4, features: V1 });
  const d = p.dataGpa;
  p.device.setNotifications(false);
  p.driver.add(SgList.of([d, 8]), new SgList(0), 1);
  assertEquals(p.driver.kick(), false); // VIRTQ_USED_F_NO_NOTIFY
  assertEquals(p.driver.kick(), false); // nothing new
  p.device.setNotifications(true);
  p.driver.add(SgList.of([d, 8]), new SgList(0), 2);
  assertEquals(p.driver.kick(), true);
  p.driver.disableCallbacks();
  p.device.push(p.device.pop()!, 0);
  assertEquals(p.device.flush(), false); // VIRTQ_AVAIL_F_NO_INTERRUPT
  assertEquals(p.driver.enableCallbacks(), false); // one used buffer already pending
  p.device.push(p.device.pop()!, 0);
  assertEquals(p.device.flush(), true);
  assertEquals(p.device.flush(), false); // nothing pushed
});

Deno.test("split notifications: EVENT_IDX used_event / avail_event", () => {
  const p = createQueuePair<number>({ size: 8, features: EVT });
  const d = p.dataGpa;
  const add = (t: number) => p.driver.add(SgList.of([d, 8]), new SgList(0), t);
  // avail_event starts at 0: the first kick (0 -> 1) crosses it.
  add(1);
  assertEquals(p.driver.kick(), true);
  // Device pops with notifications on: avail_event follows last_avail_idx (1).
  const c1 = p.device.pop()!;
  add(2);
  assertEquals(p.driver.kick(), true); // 1 -> 2 crosses avail_event 1
  p.device.setNotifications(false); // avail_event left stale at 1
  const c2 = p.device.pop()!;
  add(3);
  assertEquals(p.driver.kick(), false); // 2 -> 3 does not cross 1
  // used_event: driver enabled callbacks at 0 -> first flush (0 -> 1) notifies.
  assertEquals(p.driver.enableCallbacks(), true);
  p.device.push(c1, 0);
  assertEquals(p.device.flush(), true);
  p.device.push(c2, 0);
  assertEquals(p.device.flush(), false); // used_event 0 already passed
  assertEquals(p.driver.getUsed(), 1);
  assertEquals(p.driver.getUsed(), 2);
  p.driver.disableCallbacks();
  p.device.push(p.device.pop()!, 0);
  assertEquals(p.device.flush(), false);
  assertEquals(p.driver.enableCallbacks(), false); // pending
  assertEquals(p.driver.getUsed(), 3);
  assertEquals(p.driver.enableCallbacks(), true);
});

/** A DmaApi that fails the n-th map and records live mappings. */
class FlakyDma implements DmaApi {
  readonly name = "flaky";
  readonly inner = new RawGpaDmaApi();
  live = 0;
  failAt = -1;
  calls = 0;
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    if (this.calls++ === this.failAt) throw new DmaMapError("pool-exhausted", gpa, length, "flaky");
    this.live++;
    return gpa + 0x1_0000_0000; // a bus address above 4 GiB: exercises hi words
  }
  unmap(_b: U64, _l: number, _d: DmaDirection): void {
    this.live--;
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.inner.mapCoherent(gpa, length);
  }
  unmapCoherent(): void {}
}

Deno.test("split driver: DMA map failure -> DMA_MAP_FAILED with cause, nothing half-added", () => {
  const dma = new FlakyDma();
  const p = createQueuePair<number>({ size: 8, features: IND, dmaApi: dma });
  const d = p.dataGpa;
  dma.failAt = 2;
  const e = assertThrows(() =>
    p.driver.add(SgList.of([d, 8], [d + 8, 8]), SgList.of([d + 64, 8]), 1)
  );
  assert(isVirtqError(e, "DMA_MAP_FAILED"));
  assert(e.cause instanceof DmaMapError);
  assertEquals(dma.live, 0);
  assertEquals([p.driver.numFree, p.driver.outstanding], [8, 0]);
  assertEquals(p.driver.kick(), false);
  assertEquals(p.device.pop(), null);
  // Indirect table mapping failure (the 4th map: 3 segments then the table).
  dma.calls = 0;
  dma.failAt = 3;
  const p2 = createQueuePair<number>({
    size: 8,
    features: IND,
    dmaApi: dma,
    driverPolicy: { indirect: "always" },
  });
  assert(isVirtqError(
    assertThrows(() => p2.driver.add(SgList.of([d, 8], [d + 8, 8]), SgList.of([d + 64, 8]), 1)),
    "DMA_MAP_FAILED",
  ));
  assertEquals(dma.live, 0);
  // Success: buffers mapped until returned.
  dma.failAt = -1;
  p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 7);
  assertEquals(dma.live, 2);
  p.driver.kick();
  // Bus address 2^32 + GPA: identity-translated beyond guest memory.
  assert(isVirtqError(assertThrows(() => p.device.pop()), "DESC_BUFFER_FAULT"));
  assertEquals(p.driver.detachUnused(), 7);
  assertEquals(dma.live, 0);
});

Deno.test("split property: any well-behaved add/kick/pop/push/flush/getUsed sequence returns every token once with the device's bytes", () => {
  const op = fc.oneof(
    fc.record({
      k: fc.constant("add" as const),
      r: fc.integer({ min: 0, max: 3 }),
      w: fc.integer({ min: 0, max: 3 }),
      n: fc.integer({ min: 1, max: 40 }),
    }),
    fc.record({ k: fc.constant("kick" as const) }),
    fc.record({ k: fc.constant("pop" as const), n: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant("push" as const), n: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant("flush" as const) }),
    fc.record({ k: fc.constant("get" as const), n: fc.integer({ min: 1, max: 4 }) }),
  );
  fc.assert(
    fc.property(
      fc.constantFrom(2, 4, 8, 16),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.constantFrom("never", "always", "auto") as fc.Arbitrary<"never" | "always" | "auto">,
      fc.array(op, { maxLength: 80 }),
      (size, ind, evt, ord, indirect, ops) => {
        const bits = [VIRTIO_F_VERSION_1];
        if (ind) bits.push(VIRTIO_F_INDIRECT_DESC);
        if (evt) bits.push(VIRTIO_F_EVENT_IDX);
        if (ord) bits.push(VIRTIO_F_IN_ORDER);
        const p = createQueuePair<number>({
          size,
          features: featureMask(...bits),
          driverPolicy: { indirect },
        });
        const base = p.dataGpa;
        // token t: readable at base + t*256 (r segs of n bytes), writable at base + 0x80000 + t*256.
        const expect = new Map<number, Uint8Array>();
        const returned = new Set<number>();
        const popped: Chain[] = [];
        let pushedPending = 0;
        let next = 0;
        const drain = (max: number) => {
          for (let i = 0; i < max; i++) {
            const t = p.driver.getUsed();
            if (t === undefined) return;
            if (returned.has(t)) throw new Error(`token ${t} returned twice`);
            returned.add(t);
            const want = expect.get(t)!;
            assertEquals(p.driver.usedLen, want.length);
            const got = new Uint8Array(want.length);
            p.memory.read(base + 0x80000 + t * 256, got);
            assertEquals(got, want);
          }
        };
        for (const o of ops) {
          if (o.k === "add") {
            if (o.r + o.w === 0) continue;
            const t = next;
            const r = new SgList(), w = new SgList();
            const rg = base + t * 256, wg = base + 0x80000 + t * 256;
            const bytes = new Uint8Array(o.r * o.n);
            for (let i = 0; i < bytes.length; i++) bytes[i] = (t * 31 + i) & 0xff;
            p.memory.write(rg, bytes);
            for (let i = 0; i < o.r; i++) r.push(rg + i * o.n, o.n);
            for (let i = 0; i < o.w; i++) w.push(wg + i * o.n, o.n);
            try {
              p.driver.add(r, w, t);
            } catch (e) {
              if (isVirtqError(e, "RING_FULL")) continue;
              throw e;
            }
            next++;
            expect.set(t, bytes.subarray(0, Math.min(bytes.length, o.w * o.n)));
          } else if (o.k === "kick") p.driver.kick();
          else if (o.k === "pop") {
            for (let i = 0; i < o.n; i++) {
              const c = p.device.pop();
              if (c === null) break;
              popped.push(c);
            }
          } else if (o.k === "push") {
            for (let i = 0; i < o.n && popped.length > 0; i++) {
              const c = popped.shift()!;
              p.device.push(c, c.copyReadableToWritable());
              pushedPending++;
            }
          } else if (o.k === "flush") {
            p.device.flush();
            pushedPending = 0;
          } else drain(o.n);
        }
        // Finish everything.
        p.driver.kick();
        for (let c = p.device.pop(); c !== null; c = p.device.pop()) popped.push(c);
        for (const c of popped) p.device.push(c, c.copyReadableToWritable());
        p.device.flush();
        drain(1 << 20);
        assertEquals(returned.size, next);
        assertEquals(p.driver.outstanding, 0);
        assertEquals(p.driver.numFree, size);
        assertEquals(p.device.inFlight, 0);
        assert(pushedPending >= 0);
      },
    ),
    { seed: 42, numRuns: 300 },
  );
});
