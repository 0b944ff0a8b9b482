import { assertEquals, assertThrows } from "@std/assert";
import {
  EMPTY_SG,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  isPackedDescAvail,
  isPackedDescUsed,
  isValidPackedQueueSize,
  PACKED_DESC_SIZE,
  PACKED_EVENT_SIZE,
  packedAvailFlags,
  packedDescRingSize,
  PackedDeviceQueue,
  PackedDriverQueue,
  packedDriverQueueFootprint,
  packedEventOffWrap,
  packedNeedEvent,
  packedRingLayout,
  packedUsedFlags,
  RawGpaDmaApi,
  SgList,
  VIRTIO_F_INDIRECT_DESC,
  VirtqError,
} from "../../../src/mod.ts";

Deno.test("packed layout: known-answer sizes and offsets (spec §2.8.10, §2.8.13, §2.8.14)", () => {
  assertEquals(PACKED_DESC_SIZE, 16);
  assertEquals(PACKED_EVENT_SIZE, 4);
  assertEquals(packedDescRingSize(1), 16);
  assertEquals(packedDescRingSize(5), 80);
  assertEquals(packedDescRingSize(256), 4096);
  assertEquals(packedDescRingSize(32768), 524288);
  const l = packedRingLayout(5, false);
  assertEquals([l.descOffset, l.descBytes, l.driverEventOffset, l.deviceEventOffset], [
    0,
    80,
    80,
    84,
  ]);
  assertEquals([l.ringBytes, l.totalBytes, l.indirectTableBytes], [88, 4096, 0]);
  const li = packedRingLayout(256, true);
  assertEquals([li.ringBytes, li.indirectOffset, li.indirectTableBytes], [4104, 4112, 256]);
  assertEquals(li.totalBytes, Math.ceil((4112 + 256 * 256) / 4096) * 4096);
  assertEquals(packedDriverQueueFootprint(7), 4096);
  assertEquals(packedDriverQueueFootprint(256, featureMask(VIRTIO_F_INDIRECT_DESC)), li.totalBytes);
});

Deno.test("packed layout: queue sizes 1..32768, powers of two not required (§2.8)", () => {
  for (const s of [1, 3, 5, 7, 255, 256, 1000, 32768]) {
    assertEquals(isValidPackedQueueSize(s), true);
  }
  for (const s of [0, -1, 32769, 65536, 2.5, NaN]) assertEquals(isValidPackedQueueSize(s), false);
  assertThrows(() => packedRingLayout(0, false), RangeError);
});

Deno.test("packed flags: avail/used bits and their truth tables (§2.8.1)", () => {
  assertEquals(packedAvailFlags(1), 0x0080);
  assertEquals(packedAvailFlags(0), 0x8000);
  assertEquals(packedUsedFlags(1), 0x8080);
  assertEquals(packedUsedFlags(0), 0x0000);
  // [flags, wrap] -> available? used?
  const table: [number, number, boolean, boolean][] = [
    [0x0000, 0, false, true],
    [0x0000, 1, false, false],
    [0x0080, 1, true, false],
    [0x0080, 0, false, false],
    [0x8000, 0, true, false],
    [0x8000, 1, false, false],
    [0x8080, 1, false, true],
    [0x8080, 0, false, false],
  ];
  for (const [f, w, a, u] of table) {
    assertEquals(isPackedDescAvail(f | 0x7, w), a, `avail ${f} ${w}`);
    assertEquals(isPackedDescUsed(f | 0x7, w), u, `used ${f} ${w}`);
  }
});

Deno.test("packed event suppression: off/wrap encoding and DESC-mode truth table", () => {
  assertEquals(packedEventOffWrap(5, 1), 0x8005);
  assertEquals(packedEventOffWrap(0x7fff, 0), 0x7fff);
  // size 8, moved from 2 to 5 (wrap 1): events at 2, 3, 4 fire, 5 and 1 do not.
  const ev = (off: number, wrap: number) =>
    packedNeedEvent(packedEventOffWrap(off, wrap), 5, 3, 1, 8);
  assertEquals([ev(1, 1), ev(2, 1), ev(3, 1), ev(4, 1), ev(5, 1)], [
    false,
    true,
    true,
    true,
    false,
  ]);
  // moved across the ring end: from 6 (wrap 0) to 1 (wrap 1), 3 slots: 6, 7, 0 fire.
  const ew = (off: number, wrap: number) =>
    packedNeedEvent(packedEventOffWrap(off, wrap), 1, 3, 1, 8);
  assertEquals([ew(5, 0), ew(6, 0), ew(7, 0), ew(0, 1), ew(1, 1)], [
    false,
    true,
    true,
    true,
    false,
  ]);
});

Deno.test("packed descriptor bytes: addr le64 @0, len le32 @8, id le16 @12, flags le16 @14", () => {
  const mem = GuestMemory.flat(0x10000);
  const drv = new PackedDriverQueue<string>({
    memory: mem,
    dma: new RawGpaDmaApi(),
    size: 4,
    features: 0n,
    ringGpa: 0x1000,
  });
  drv.add(SgList.of([0x1234_5670, 0x20]), EMPTY_SG, "a");
  const bytes = (o: number, n: number) => [...mem.view(0x1000 + o, n)];
  // head flags not yet written (published at kick)
  assertEquals(bytes(14, 2), [0, 0]);
  drv.add(SgList.of([0x2000, 0x10]), SgList.of([0x3000, 0x30]), "b");
  // second buffer: ID 1, slots 1 and 2, flags written at add (NEXT | AVAIL), (WRITE | AVAIL)
  assertEquals(bytes(16 + 12, 4), [1, 0, 0x81, 0x00]);
  assertEquals(bytes(32, 16), [0, 0x30, 0, 0, 0, 0, 0, 0, 0x30, 0, 0, 0, 1, 0, 0x82, 0x00]);
  assertEquals(drv.kick(), true);
  assertEquals(bytes(0, 16), [
    0x70,
    0x56,
    0x34,
    0x12,
    0,
    0,
    0,
    0,
    0x20,
    0,
    0,
    0,
    0,
    0,
    0x80,
    0x00,
  ]);
  // the device sees the batch: buffer 0 names memory outside the guest, so it faults
  const dev = new PackedDeviceQueue({
    memory: mem,
    dma: new IdentityAddressSpace(),
    size: 4,
    addresses: drv.addresses,
    features: 0n,
  });
  const e = assertThrows(() => dev.pop(), VirtqError);
  assertEquals([e.code, e.index], ["DESC_BUFFER_FAULT", 0]);
});
