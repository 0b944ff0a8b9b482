import { assertEquals, assertThrows } from "@std/assert";
import {
  type DriverPolicy,
  EMPTY_SG,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  PackedDeviceQueue,
  PackedDriverQueue,
  PackedRingBuilder,
  packedUsedFlags,
  RawGpaDmaApi,
  SgList,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTQ_DESC_F_WRITE,
  VirtqError,
  writePackedEvent,
} from "../../../src/mod.ts";

const RING = 0x1000;

function setup(size: number, features = 0n, policy: Partial<DriverPolicy> = {}) {
  const memory = GuestMemory.flat(0x40000);
  const drv = new PackedDriverQueue<string>({
    memory,
    dma: new RawGpaDmaApi(),
    size,
    features,
    ringGpa: RING,
    policy,
  });
  const ring = new PackedRingBuilder(memory, RING, size);
  return { memory, drv, ring };
}

Deno.test("packed driver: wrap-around after exactly Queue Size descriptors (sizes 4, 5, 7, 255, 256)", () => {
  for (const size of [4, 5, 7, 255, 256]) {
    const { drv, ring, memory } = setup(size);
    const dev = new PackedDeviceQueue({
      memory,
      dma: new IdentityAddressSpace(),
      size,
      addresses: drv.addresses,
      features: 0n,
    });
    for (let lap = 0; lap < 3; lap++) {
      for (let i = 0; i < size; i++) drv.add(SgList.of([0x20000, 8]), EMPTY_SG, `${lap}.${i}`);
      assertEquals(drv.numFree, 0);
      assertThrows(() => drv.add(SgList.of([0x20000, 8]), EMPTY_SG, "x"), VirtqError);
      drv.kick();
      // lap 1 (index 0) writes AVAIL=1/USED=0, lap 2 AVAIL=0/USED=1, lap 3 again AVAIL=1
      const wrap = lap % 2 === 0 ? 1 : 0;
      assertEquals(ring.read(size - 1).flags, wrap ? 0x80 : 0x8000, `size ${size} lap ${lap}`);
      for (let i = 0; i < size; i++) dev.push(dev.pop()!, 0);
      assertEquals(dev.pop(), null);
      assertEquals(dev.availPosition, { offset: 0, wrap: wrap ^ 1 });
      dev.flush();
      assertEquals(ring.read(0).flags, packedUsedFlags(wrap));
      for (let i = 0; i < size; i++) assertEquals(drv.getUsed(), `${lap}.${i}`);
      assertEquals(drv.getUsed(), undefined);
      assertEquals(drv.numFree, size);
    }
  }
});

/** Adds and publishes one 1-segment buffer with 16 writable bytes; returns nothing. */
function addOne(drv: PackedDriverQueue<string>, token: string) {
  drv.add(SgList.of([0x20000, 4]), SgList.of([0x21000, 16]), token);
}

Deno.test("packed driver: hostile device, one minimal input per driver error code", () => {
  // size 8: "a" is ID 0 (slots 0-1), "b" ID 2 (slots 2-3), "c" ID 4 (slots 4-5, not kicked)
  const cases: [string, (r: PackedRingBuilder) => void][] = [
    [
      "USED_ID_OUT_OF_RANGE",
      (r) => r.write(2, { addr: 0n, len: 0, id: 8, flags: packedUsedFlags(1) }),
    ],
    ["USED_ID_NOT_HEAD", (r) => r.write(2, { addr: 0n, len: 0, id: 0, flags: packedUsedFlags(1) })], // returned already
    ["USED_ID_NOT_HEAD", (r) => r.write(2, { addr: 0n, len: 0, id: 3, flags: packedUsedFlags(1) })], // mid-list entry
    ["USED_ID_NOT_HEAD", (r) => r.write(2, { addr: 0n, len: 0, id: 6, flags: packedUsedFlags(1) })], // never added
    ["USED_ID_NOT_HEAD", (r) => r.write(2, { addr: 0n, len: 0, id: 4, flags: packedUsedFlags(1) })], // not kicked
    [
      "USED_LEN_EXCEEDS_CAPACITY",
      (r) =>
        r.write(2, { addr: 0n, len: 17, id: 2, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE }),
    ],
  ];
  for (const [code, hostile] of cases) {
    const { drv, ring } = setup(8);
    addOne(drv, "a");
    addOne(drv, "b");
    drv.kick();
    addOne(drv, "c");
    assertEquals([ring.read(1).id, ring.read(3).id, ring.read(5).id], [0, 2, 4]);
    // the device uses buffer "a" honestly
    ring.write(0, { addr: 0n, len: 5, id: 0, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
    assertEquals(drv.getUsed(), "a");
    assertEquals(drv.usedLen, 5);
    hostile(ring);
    const e = assertThrows(() => drv.getUsed(), VirtqError);
    assertEquals(e.code, code);
    assertEquals(e.side, "driver");
    assertEquals(drv.broken, e);
    assertEquals(drv.getUsed(), undefined);
    assertEquals(assertThrows(() => addOne(drv, "d"), VirtqError).code, "QUEUE_BROKEN");
    // detach gives back every outstanding token exactly once
    const left = [];
    for (let t = drv.detachUnused(); t !== undefined; t = drv.detachUnused()) left.push(t);
    assertEquals(left.sort(), ["b", "c"]);
    assertEquals(drv.numFree, 8);
    // after a device reset the ring restarts: zeroed, lap 1, usable again
    drv.resetRings();
    assertEquals(drv.broken, null);
    assertEquals(ring.read(0), { addr: 0n, len: 0, id: 0, flags: 0 });
    addOne(drv, "e");
    drv.kick();
    ring.write(0, { addr: 0n, len: 1, id: 0, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
    assertEquals(drv.getUsed(), "e");
  }
});

Deno.test("packed driver: used length policy clamp; WRITE clear means len reserved (0)", () => {
  const { drv, ring } = setup(4, 0n, { usedLenExceedsCapacity: "clamp" });
  addOne(drv, "a");
  addOne(drv, "b");
  drv.kick();
  ring.write(0, { addr: 0n, len: 999, id: 0, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
  assertEquals(drv.getUsed(), "a");
  assertEquals(drv.usedLen, 16);
  ring.write(2, { addr: 0n, len: 999, id: 2, flags: packedUsedFlags(1) });
  assertEquals(drv.getUsed(), "b");
  assertEquals(drv.usedLen, 0);
});

Deno.test("packed driver: wrong wrap or inconsistent bits are not used yet (#43); skip from driver state", () => {
  const { drv, ring } = setup(8);
  drv.add(SgList.of([0x20000, 4], [0x20010, 4]), SgList.of([0x21000, 16]), "three"); // ID 0
  addOne(drv, "two"); // ID 3, slots 3-4
  drv.kick();
  for (const flags of [packedUsedFlags(0), 0x80, 0x8000]) {
    ring.write(0, { addr: 0n, len: 0, id: 3, flags });
    assertEquals(drv.getUsed(), undefined);
    assertEquals(drv.broken, null);
  }
  // the device completes "two" first at slot 0; the driver skips 2 slots (its own count for
  // ID 3), not 3 (ID 0's), so the next used descriptor is expected at slot 2
  ring.write(0, { addr: 0n, len: 1, id: 3, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
  assertEquals(drv.getUsed(), "two");
  ring.write(2, { addr: 0n, len: 2, id: 0, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
  assertEquals(drv.getUsed(), "three");
  assertEquals(drv.usedLen, 2);
});

Deno.test("packed driver: kick honours device event suppression (§2.8.10)", () => {
  // one buffer of 2 slots published: position moves 0 -> 2 in lap 1 (wrap 1)
  const table: [number, number, boolean, boolean][] = [
    // flags, off|wrap, want without EVENT_IDX, want with EVENT_IDX
    [0, 0, true, true],
    [1, 0, false, false],
    [3, 0, true, true],
    [2, 0x8000 | 0, true, true],
    [2, 0x8000 | 1, true, true],
    [2, 0x8000 | 2, true, false],
    [2, 0x0000 | 7, true, false], // previous lap
  ];
  for (const eventIdx of [false, true]) {
    for (const [flags, offWrap, plain, withIdx] of table) {
      const { drv, memory } = setup(8, eventIdx ? featureMask(VIRTIO_F_EVENT_IDX) : 0n);
      assertEquals(drv.kick(), false); // nothing added
      writePackedEvent(memory, drv.addresses.deviceAddr as number, offWrap, flags);
      addOne(drv, "x");
      assertEquals(drv.kick(), eventIdx ? withIdx : plain, `${eventIdx} ${flags} ${offWrap}`);
    }
  }
});

Deno.test("packed driver: enable/disable callbacks write the driver event suppression structure", () => {
  const { drv, memory, ring } = setup(4, featureMask(VIRTIO_F_EVENT_IDX));
  // "a" takes slots 0-1
  const da = drv.addresses.driverAddr as number;
  drv.disableCallbacks();
  assertEquals(memory.readU16(da + 2), 1);
  assertEquals(drv.enableCallbacks(), true);
  assertEquals([memory.readU16(da), memory.readU16(da + 2)], [0x8000, 2]);
  addOne(drv, "a");
  drv.kick();
  ring.write(0, { addr: 0n, len: 0, id: 0, flags: packedUsedFlags(1) });
  assertEquals(drv.enableCallbacks(), false); // one is pending
  assertEquals(drv.getUsed(), "a");
  assertEquals(memory.readU16(da), 0x8002); // kept current by getUsed
  const plain = setup(4);
  plain.drv.enableCallbacks();
  assertEquals(plain.memory.readU16((plain.drv.addresses.driverAddr as number) + 2), 0);
});

Deno.test("packed driver: IN_ORDER batch retired by one used descriptor", () => {
  const { drv, ring } = setup(8, featureMask(VIRTIO_F_IN_ORDER));
  addOne(drv, "a"); // slots 0-1, ID 0
  addOne(drv, "b"); // slots 2-3, ID 2
  addOne(drv, "c"); // slots 4-5, ID 4
  drv.kick();
  const idOfC = ring.read(5).id;
  ring.write(0, { addr: 0n, len: 3, id: idOfC, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
  assertEquals([drv.getUsed(), drv.usedLen], ["a", 16]);
  assertEquals([drv.getUsed(), drv.usedLen], ["b", 16]);
  assertEquals([drv.getUsed(), drv.usedLen], ["c", 3]);
  assertEquals(drv.getUsed(), undefined);
  assertEquals(drv.numFree, 8);
});

Deno.test("packed driver: API errors", () => {
  const { drv } = setup(2);
  assertEquals(
    assertThrows(() => drv.add(EMPTY_SG, EMPTY_SG, "e"), VirtqError).code,
    "BUFFER_EMPTY",
  );
  assertEquals(
    assertThrows(() => drv.add(SgList.of([0x20000, 0]), EMPTY_SG, "e"), VirtqError).code,
    "BUFFER_EMPTY",
  );
  assertEquals(
    assertThrows(
      () => drv.add(SgList.of([0x20000, 1], [0x20000, 1], [0x20000, 1]), EMPTY_SG, "e"),
      VirtqError,
    )
      .code,
    "RING_FULL",
  );
  assertEquals(
    assertThrows(() => drv.add(SgList.of([2 ** 52, 1]), EMPTY_SG, "e"), VirtqError).code,
    "DMA_MAP_FAILED",
  );
  assertEquals(drv.numFree, 2);
  assertEquals(drv.outstanding, 0);
  assertEquals(assertThrows(() => setup(0), VirtqError).code, "QUEUE_SIZE_INVALID");
  const mk = (ringGpa: number) => () =>
    new PackedDriverQueue({
      memory: GuestMemory.flat(0x4000),
      dma: new RawGpaDmaApi(),
      size: 4,
      features: 0n,
      ringGpa,
    });
  assertEquals(assertThrows(mk(0x1008), VirtqError).code, "RING_MISALIGNED");
  assertEquals(assertThrows(mk(0x4000), VirtqError).code, "RING_UNMAPPED");
});

Deno.test("packed driver: a failed add (empty or unmappable later segment) leaves nothing mapped", () => {
  const live = new Set<string>();
  const inner = new RawGpaDmaApi();
  const dma = {
    name: "count",
    map: (g: number, l: number, d: 0 | 1 | 2) => {
      const b = inner.map(g, l, d);
      live.add(`${b}:${l}`);
      return b;
    },
    unmap: (b: number | bigint, l: number) => void live.delete(`${b}:${l}`),
    syncForCpu() {},
    syncForDevice() {},
    mapCoherent: (g: number, l: number) => inner.mapCoherent(g, l),
    unmapCoherent() {},
  };
  for (const features of [0n, featureMask(VIRTIO_F_INDIRECT_DESC)]) {
    const drv = new PackedDriverQueue<string>({
      memory: GuestMemory.flat(0x10000),
      dma,
      size: 8,
      features,
      ringGpa: 0x1000,
      policy: { indirect: "always" },
    });
    const bad = [
      [SgList.of([0x8000, 4], [0x8100, 0]), "BUFFER_EMPTY"],
      [SgList.of([0x8000, 4], [2 ** 52, 4]), "DMA_MAP_FAILED"],
    ] as const;
    for (const [r, code] of bad) {
      assertEquals(assertThrows(() => drv.add(r, EMPTY_SG, "x"), VirtqError).code, code);
      assertEquals(live.size, 0);
      assertEquals([drv.numFree, drv.outstanding], [8, 0]);
    }
  }
});

Deno.test("packed driver: kick counts every slot added since the last kick, across the ring end and for a whole ring (§2.8.10)", () => {
  // [size, buffers of 2 slots before the measured kick, retire them first?, off|wrap, want]
  const cases: [number, number, boolean, number, boolean][] = [
    // size 4: two buffers fill the whole ring (4 slots), position 0 -> 0, wrap 1 -> 0
    [4, 2, false, 0x8000 | 3, true],
    [4, 2, false, 0x8000 | 0, true],
    [4, 2, false, 0x0000 | 0, false], // the next lap's slot 0: not passed
    // size 5: after one kicked and used buffer (slots 0-1), two more take slots 2-3 and 4-0
    [5, 2, true, 0x8000 | 4, true],
    [5, 2, true, 0x8000 | 2, true],
    [5, 2, true, 0x0000 | 1, false],
  ];
  for (const [size, n, first, offWrap, want] of cases) {
    const { drv, memory, ring } = setup(size, featureMask(VIRTIO_F_EVENT_IDX));
    if (first) {
      addOne(drv, "first");
      drv.kick();
      ring.write(0, { addr: 0n, len: 0, id: 0, flags: packedUsedFlags(1) });
      assertEquals(drv.getUsed(), "first");
    }
    writePackedEvent(memory, drv.addresses.deviceAddr as number, offWrap, 2); // DESC
    for (let i = 0; i < n; i++) addOne(drv, `b${i}`);
    assertEquals(drv.kick(), want, `size ${size} off|wrap 0x${offWrap.toString(16)}`);
    assertEquals(drv.kick(), false); // nothing new
  }
});

Deno.test("packed driver: one-descriptor completions (getUsed's fast path) break as the general path", () => {
  // Every buffer here is one descriptor under RawGpaDmaApi without IN_ORDER, the buffers getUsed
  // completes on its small fast path; each hostile used descriptor must still get its own code.
  // size 8: "a" ID 0 slot 0 (writable 16), "r" ID 1 slot 1 (readable), "w" ID 2 slot 2
  // (writable 16), "late" ID 3 slot 3 (added, not kicked).
  const one = (attack: (r: PackedRingBuilder) => void, policy: Partial<DriverPolicy> = {}) => {
    const t = setup(8, 0n, policy);
    t.drv.add(EMPTY_SG, SgList.of([0x21000, 16]), "a");
    t.drv.add(SgList.of([0x20000, 4]), EMPTY_SG, "r");
    t.drv.add(EMPTY_SG, SgList.of([0x22000, 16]), "w");
    t.drv.kick();
    t.drv.add(EMPTY_SG, SgList.of([0x23000, 16]), "late");
    t.ring.write(0, { addr: 0n, len: 16, id: 0, flags: packedUsedFlags(1) | VIRTQ_DESC_F_WRITE });
    assertEquals([t.drv.getUsed(), t.drv.usedLen], ["a", 16]);
    attack(t.ring);
    return t;
  };
  const code = (attack: (r: PackedRingBuilder) => void) => {
    const { drv } = one(attack);
    const e = assertThrows(() => drv.getUsed(), VirtqError);
    assertEquals(drv.broken, e);
    assertEquals(drv.getUsed(), undefined);
    return e.code;
  };
  const used = (id: number, len: number, write = true) => (r: PackedRingBuilder) =>
    r.write(1, { addr: 0n, len, id, flags: packedUsedFlags(1) | (write ? VIRTQ_DESC_F_WRITE : 0) });
  assertEquals(code(used(8, 0)), "USED_ID_OUT_OF_RANGE");
  assertEquals(code(used(0xffff, 0)), "USED_ID_OUT_OF_RANGE");
  assertEquals(code(used(0, 0)), "USED_ID_NOT_HEAD"); // returned already
  assertEquals(code(used(5, 0)), "USED_ID_NOT_HEAD"); // never added
  assertEquals(code(used(3, 0)), "USED_ID_NOT_HEAD"); // added, not kicked
  assertEquals(code(used(2, 17)), "USED_LEN_EXCEEDS_CAPACITY");
  // the device-readable buffer has no writable capacity: any written length exceeds it...
  assertEquals(code(used(1, 1)), "USED_LEN_EXCEEDS_CAPACITY");
  // ...unless WRITE is clear: len is reserved then (taken as 0)
  const r = one(used(1, 999, false));
  assertEquals([r.drv.getUsed(), r.drv.usedLen, r.drv.broken], ["r", 0, null]);
  // clamp policy: the length is cut to the capacity, the queue stays usable
  const c = one(used(2, 17), { usedLenExceedsCapacity: "clamp" });
  assertEquals([c.drv.getUsed(), c.drv.usedLen, c.drv.broken], ["w", 16, null]);
  // a valid completion frees exactly one slot, reused (same ID) by the next add
  const h = one(used(2, 3));
  const free = h.drv.numFree;
  assertEquals([h.drv.getUsed(), h.drv.usedLen], ["w", 3]);
  assertEquals([h.drv.numFree, h.drv.outstanding], [free + 1, 2]);
  h.drv.add(EMPTY_SG, SgList.of([0x24000, 8]), "next");
  assertEquals(h.ring.read(4).id, 2);
});

Deno.test("packed driver: one-descriptor, chained and indirect buffers mixed over many laps, callbacks on and off", () => {
  // The fast path (one descriptor, no table) and the general path (lists, indirect tables,
  // RING_EVENT_FLAGS_DESC callbacks) take turns on one queue of an odd size, so laps end at
  // every offset: each buffer comes back once, with its length, and the free count is exact.
  const size = 7;
  const { drv, memory } = setup(size, featureMask(VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX), {
    indirect: "auto",
  });
  const dev = new PackedDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size,
    addresses: drv.addresses,
    features: featureMask(VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX),
  });
  const da = drv.addresses.driverAddr as number;
  let n = 0;
  let slots = 0; // ring slots completed so far: the driver's used position is slots % size
  for (let round = 0; round < 60; round++) {
    if (round % 5 === 3) drv.enableCallbacks();
    if (round % 5 === 4) drv.disableCallbacks();
    const want: string[] = [];
    const cap = new Map<string, number>();
    for (let k = 0; k < 1 + (round % 3); k++) {
      const kind = (round + k) % 4; // 0, 1: one descriptor; 2: a list of two; 3: indirect
      const tok = `t${n++}`;
      if (kind <= 1) {
        drv.add(EMPTY_SG, SgList.of([0x21000 + 64 * k, 16]), tok);
        cap.set(tok, 16);
      } else if (kind === 2 && drv.numFree >= 2) {
        drv.add(SgList.of([0x20000, 4]), SgList.of([0x22000 + 64 * k, 16]), tok);
        cap.set(tok, 16);
      } else if (drv.numFree >= 1) {
        // policy "auto": a list of three when 3 slots are free, else an indirect table
        const free = drv.numFree;
        drv.add(SgList.of([0x20000, 4], [0x20100, 4]), SgList.of([0x23000, 8]), tok);
        assertEquals(drv.numFree, free >= 3 ? free - 3 : free - 1);
        cap.set(tok, 8);
      } else continue;
      want.push(tok);
    }
    slots += size - drv.numFree;
    drv.kick();
    for (let c = dev.pop(); c !== null; c = dev.pop()) dev.push(c, c.writableBytes - 1);
    dev.flush();
    const got: string[] = [];
    for (let t = drv.getUsed(); t !== undefined; t = drv.getUsed()) {
      got.push(t);
      assertEquals(drv.usedLen, cap.get(t)! - 1, `round ${round} ${t}`);
    }
    assertEquals(got, want, `round ${round}`);
    assertEquals([drv.numFree, drv.outstanding, drv.broken], [size, 0, null]);
    if (round % 5 === 3) {
      // RING_EVENT_FLAGS_DESC: getUsed kept the event offset at its used position and wrap
      const wrap = Math.floor(slots / size) % 2 === 0 ? 1 : 0;
      assertEquals(memory.readU16(da), (slots % size) | (wrap << 15), `round ${round}`);
    }
  }
});
