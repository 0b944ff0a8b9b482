import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import {
  createDmaLab,
  createQueuePair,
  DMA_MODE_NAMES,
  EMPTY_SG,
  featureMask,
  GuestMemory,
  SgList,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtqError,
} from "../../../src/mod.ts";

// the packed layout is negotiated: VIRTIO_F_RING_PACKED is in every feature set here
const V1 = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED);

/** One round trip of `n` buffers (readable `rlen`, writable `wlen`), loopback device. */
function roundTrip(
  pair: ReturnType<typeof createQueuePair<number>>,
  n: number,
  rlen: number,
  wlen: number,
  base: number,
) {
  const { driver, device, memory } = pair;
  for (let i = 0; i < n; i++) {
    const r = base + i * 0x2000;
    memory.view(r, rlen).fill(i + 1);
    memory.view(r + 0x1000, wlen).fill(0);
    driver.add(SgList.of([r, rlen]), SgList.of([r + 0x1000, wlen]), i);
  }
  driver.kick();
  for (let c = device.pop(); c !== null; c = device.pop()) {
    device.push(c, c.copyReadableToWritable());
  }
  device.flush();
  const got: number[] = [];
  for (let t = driver.getUsed(); t !== undefined; t = driver.getUsed()) {
    got.push(t);
    assertEquals(driver.usedLen, Math.min(rlen, wlen));
    const w = memory.view(base + t * 0x2000 + 0x1000, driver.usedLen);
    assertEquals(w.every((b) => b === t + 1), true);
  }
  return got;
}

Deno.test("packed round trip: direct, indirect, in-order, event index (non power-of-2 sizes)", () => {
  const combos = [
    0n,
    featureMask(VIRTIO_F_INDIRECT_DESC),
    featureMask(VIRTIO_F_IN_ORDER),
    featureMask(VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER),
  ];
  for (const f of combos) {
    for (const size of [2, 3, 5, 7, 100, 255]) {
      const pair = createQueuePair<number>({
        layout: "packed",
        size,
        features: V1 | f,
        driverPolicy: { indirect: "always" },
      });
      for (let round = 0; round < 5; round++) {
        const n = Math.max(1, Math.floor(size / 2));
        const got = roundTrip(pair, n, 64, 48, pair.dataGpa);
        assertEquals(got, [...Array(n).keys()]);
        assertEquals(pair.driver.numFree, size);
      }
    }
  }
});

Deno.test("packed indirect: the device sees one ring descriptor and the table's segments", () => {
  const pair = createQueuePair<string>({
    layout: "packed",
    size: 4,
    features: V1 | featureMask(VIRTIO_F_INDIRECT_DESC),
    driverPolicy: { indirect: "always" },
  });
  const d = pair.dataGpa;
  pair.driver.add(SgList.of([d, 10], [d + 0x100, 20]), SgList.of([d + 0x200, 30]), "t");
  assertEquals(pair.driver.numFree, 3);
  pair.driver.kick();
  const c = pair.device.pop()!;
  assertEquals([c.indirect, c.ringDescriptors, c.readableCount, c.writableCount], [true, 1, 2, 1]);
  assertEquals([c.readableBytes, c.writableBytes], [30, 30]);
  pair.device.push(c, 30);
  pair.device.flush();
  assertEquals(pair.driver.getUsed(), "t");
  assertEquals(pair.driver.usedLen, 30);
});

Deno.test("packed IN_ORDER: one used descriptor retires a batch of fully written buffers", () => {
  const pair = createQueuePair<number>({
    layout: "packed",
    size: 8,
    features: V1 | featureMask(VIRTIO_F_IN_ORDER),
  });
  const d = pair.dataGpa;
  for (let i = 0; i < 3; i++) {
    pair.driver.add(SgList.of([d, 8]), SgList.of([d + 0x1000 * (i + 1), 16]), i);
  }
  pair.driver.kick();
  const cs = [pair.device.pop()!, pair.device.pop()!, pair.device.pop()!];
  pair.device.push(cs[0], 16);
  pair.device.push(cs[1], 16);
  pair.device.push(cs[2], 5);
  assertEquals(pair.device.flush(), true);
  // one used descriptor at slot 0 naming the last buffer of the batch (ID 4)
  const m = pair.memory, r = pair.ringGpa;
  assertEquals([m.readU16(r + 12), m.readU32(r + 8), m.readU16(r + 14)], [4, 5, 0x8082]);
  assertEquals(m.readU16(r + 32 + 14) & 0x8080, 0x0080); // slot 2 still as the driver wrote it
  const out = [];
  for (let t = pair.driver.getUsed(); t !== undefined; t = pair.driver.getUsed()) {
    out.push([t, pair.driver.usedLen]);
  }
  assertEquals(out, [[0, 16], [1, 16], [2, 5]]);
});

Deno.test("packed round trip over every DMA mode", () => {
  for (const name of DMA_MODE_NAMES) {
    const lab = createDmaLab(name, { bufferSize: 1 << 20, ringSize: 1 << 20, poolSize: 1 << 20 });
    const pair = createQueuePair<number>({
      layout: "packed",
      size: 16,
      features: V1 | featureMask(VIRTIO_F_INDIRECT_DESC) |
        (name === "none" ? 0n : featureMask(VIRTIO_F_ACCESS_PLATFORM)),
      memory: lab.memory,
      dmaApi: lab.mode.api,
      dmaSpace: lab.mode.space,
      ringGpa: lab.ringGpa,
    });
    for (let round = 0; round < 3; round++) {
      assertEquals(roundTrip(pair, 6, 100, 80, lab.bufferGpa).length, 6, name);
    }
  }
});

Deno.test("packed property: random workloads return every token once with loopback bytes", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.constantFrom(0n, featureMask(VIRTIO_F_INDIRECT_DESC), featureMask(VIRTIO_F_IN_ORDER)),
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.nat(5)),
        {
          minLength: 1,
          maxLength: 60,
        },
      ),
      (size, f, work) => {
        const memory = GuestMemory.flat(0x200000);
        const pair = createQueuePair<number>({
          layout: "packed",
          size,
          features: f | featureMask(VIRTIO_F_RING_PACKED),
          memory,
        });
        const returned = new Set<number>();
        let token = 0;
        const held: ReturnType<typeof pair.device.pop>[] = [];
        const out = new Map<number, number>();
        for (const [nr, nw, steps] of work) {
          const r = new SgList(), w = new SgList();
          for (let i = 0; i < nr; i++) r.push(0x100000 + (token % 64) * 0x800 + i * 0x100, 0x40);
          for (let i = 0; i < nw; i++) {
            w.push(0x100000 + (token % 64) * 0x800 + 0x400 + i * 0x100, 0x30);
          }
          if (nr + nw > 0 && pair.driver.numFree >= (nr + nw) && pair.driver.outstanding < 32) {
            pair.driver.add(r, w, token);
            out.set(token, Math.min(nr * 0x40, nw * 0x30));
            token++;
          }
          if (steps % 2 === 0) pair.driver.kick();
          for (let s = 0; s < steps; s++) {
            const c = pair.device.pop();
            if (c === null) break;
            held.push(c);
          }
          if (held.length > 0 && steps % 3 !== 1) {
            const c = held.splice(
              f === featureMask(VIRTIO_F_IN_ORDER) ? 0 : steps % held.length,
              1,
            )[0]!;
            pair.device.push(c, c.copyReadableToWritable());
            pair.device.flush();
          }
          for (let t = pair.driver.getUsed(); t !== undefined; t = pair.driver.getUsed()) {
            assertEquals(returned.has(t), false);
            returned.add(t);
            assertEquals(pair.driver.usedLen, out.get(t));
          }
        }
        pair.driver.kick();
        for (let c = pair.device.pop(); c !== null; c = pair.device.pop()) held.push(c);
        for (const c of held) pair.device.push(c!, c!.copyReadableToWritable());
        pair.device.flush();
        for (let t = pair.driver.getUsed(); t !== undefined; t = pair.driver.getUsed()) {
          returned.add(t);
        }
        assertEquals(returned.size, token);
        assertEquals(pair.driver.numFree, size);
        assertEquals(pair.device.inFlight, 0);
      },
    ),
    { seed: 42, numRuns: 200 },
  );
});

Deno.test("packed: EMPTY_SG buffers of one direction, queue sizes 1 and 2", () => {
  const one = createQueuePair<string>({ layout: "packed", size: 1 });
  for (let i = 0; i < 3; i++) {
    one.driver.add(SgList.of([one.dataGpa, 4]), EMPTY_SG, `x${i}`);
    one.driver.kick();
    one.device.push(one.device.pop()!, 0);
    one.device.flush();
    assertEquals(one.driver.getUsed(), `x${i}`);
  }
  const pair = createQueuePair<string>({ layout: "packed", size: 2 });
  pair.driver.add(SgList.of([pair.dataGpa, 4]), EMPTY_SG, "out");
  pair.driver.add(EMPTY_SG, SgList.of([pair.dataGpa + 16, 4]), "in");
  pair.driver.kick();
  const a = pair.device.pop()!, b = pair.device.pop()!;
  assertEquals([a.readableBytes, a.writableBytes, b.readableBytes, b.writableBytes], [4, 0, 0, 4]);
  pair.device.push(b, 4);
  pair.device.push(a, 0);
  pair.device.flush();
  assertEquals([pair.driver.getUsed(), pair.driver.usedLen], ["in", 4]);
  assertEquals([pair.driver.getUsed(), pair.driver.usedLen], ["out", 0]);
});

Deno.test("packed driver: a refused add leaves no stale available descriptor behind (fuzz finding)", () => {
  // Size 3, direct lists: the refused add writes slots 0 and 1, then fails on its third segment.
  // A later one-descriptor add overwrites only slot 0; slot 1 must not still read as available.
  for (const failure of ["zero-length", "map"] as const) {
    const pair = createQueuePair<number>({
      layout: "packed",
      size: 3,
      features: V1,
      driverPolicy: { indirect: "never" },
    });
    const { driver, device } = pair;
    // The third segment is refused: length 0 (BUFFER_EMPTY), or a range beyond 2^52 that the
    // raw-GPA DMA API cannot map (DMA_MAP_FAILED).
    const third: [number, number] = failure === "zero-length" ? [0x10200, 0] : [2 ** 52 - 4, 8];
    const bad = SgList.of([0x10000, 8], [0x10100, 8], third);
    const err = assertThrows(() => driver.add(bad, SgList.of(), 1), VirtqError);
    assertEquals(err.code, failure === "zero-length" ? "BUFFER_EMPTY" : "DMA_MAP_FAILED");
    driver.add(SgList.of([0x11000, 8]), SgList.of(), 2);
    driver.kick();
    const chain = device.pop();
    assertEquals(chain?.id !== undefined, true);
    device.push(chain!, 0);
    device.flush();
    assertEquals(device.pop(), null); // was: PACKED_CHAIN_UNAVAILABLE from the stale slot 1
    assertEquals(driver.getUsed(), 2);
  }
});
