import { assertEquals, assertThrows } from "@std/assert";
import {
  type ChainPolicy,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  PACKED_DEVICE_ERROR_CODES,
  packedAvailFlags,
  PackedDeviceQueue,
  PackedRingBuilder,
  VIRTIO_F_INDIRECT_DESC,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqError,
  type VirtqErrorCode,
  writePackedEvent,
} from "../../../src/mod.ts";
import type { DmaAccess, DmaAddressSpace, DmaTranslation, U64 } from "../../../src/mod.ts";

const RING = 0x1000;
const MEM = 0x20000;
const A = packedAvailFlags(1);

/** Folds every bus address at or above 0x100000 onto 32 KiB at 0x10000, in 32 KiB pieces. */
class AliasSpace implements DmaAddressSpace {
  readonly name = "alias";
  translate(bus: U64, length: number, _a: DmaAccess, out: DmaTranslation): void {
    if (typeof bus === "number" && bus < 0x100000) {
      out.gpa = bus;
      out.length = length;
      return;
    }
    const off = Number(BigInt(bus) % 0x8000n);
    out.gpa = 0x10000 + off;
    out.length = Math.min(length, 0x8000 - off);
  }
}

function setup(
  size: number,
  features = 0n,
  policy: Partial<ChainPolicy> = {},
  dma: DmaAddressSpace = new IdentityAddressSpace(),
) {
  const memory = GuestMemory.flat(MEM);
  const ring = new PackedRingBuilder(memory, RING, size);
  const addresses = {
    descAddr: RING,
    driverAddr: RING + 16 * size,
    deviceAddr: RING + 16 * size + 4,
  };
  const dev = new PackedDeviceQueue({ memory, dma, size, addresses, features, policy });
  return { memory, ring, dev, addresses };
}

/**
 * Makes one valid chain available at slot 0, pops, pushes and flushes it (completed work), then
 * lets `hostile` write from slot 1 on, and checks: exact code, broken state, later pops null even
 * with a valid descriptor available, completed used descriptor kept.
 */
function expectHostile(
  code: VirtqErrorCode,
  hostile: (ring: PackedRingBuilder, dev: PackedDeviceQueue) => void,
  size = 4,
  features = 0n,
  policy: Partial<ChainPolicy> = {},
  dma?: DmaAddressSpace,
) {
  const { ring, dev } = setup(size, features, policy, dma);
  ring.write(0, { addr: 0x8000n, len: 16, id: 3, flags: A | VIRTQ_DESC_F_WRITE });
  const ok = dev.pop();
  if (ok === null) throw new Error("valid chain not popped");
  dev.push(ok, 8);
  dev.flush();
  let touched0 = false;
  const write = ring.write.bind(ring);
  ring.write = (slot, d) => {
    if (slot === 0) touched0 = true;
    write(slot, d);
  };
  hostile(ring, dev);
  const e = assertThrows(() => dev.pop(), VirtqError);
  assertEquals(e.code, code, e.message);
  assertEquals(dev.broken, e);
  assertEquals(e.side, "device");
  // a valid descriptor at the next slot is not consumed while broken
  ring.write(1, { addr: 0x8000n, len: 16, id: 0, flags: A });
  assertEquals(dev.pop(), null);
  // the completed buffer stays used: id 3, len 8, AVAIL = USED = 1, WRITE
  if (!touched0) {
    assertEquals(ring.read(0), {
      addr: 0x8000n,
      len: 8,
      id: 3,
      flags: 0x8080 | VIRTQ_DESC_F_WRITE,
    });
  }
  // reset recovers
  dev.reset();
  assertEquals(dev.broken, null);
  return e;
}

const IND = featureMask(VIRTIO_F_INDIRECT_DESC);

Deno.test("packed device: activation errors", () => {
  const memory = GuestMemory.flat(MEM);
  const mk = (size: number, descAddr: number, driverAddr = 0x3000, deviceAddr = 0x3004) => () =>
    new PackedDeviceQueue({
      memory,
      dma: new IdentityAddressSpace(),
      size,
      addresses: { descAddr, driverAddr, deviceAddr },
      features: 0n,
    });
  const code = (f: () => unknown) => assertThrows(f, VirtqError).code;
  assertEquals(code(mk(0, RING)), "QUEUE_SIZE_INVALID");
  assertEquals(code(mk(32769, RING)), "QUEUE_SIZE_INVALID");
  assertEquals(code(mk(4, RING + 8)), "RING_MISALIGNED");
  assertEquals(code(mk(4, RING, 0x3002)), "RING_MISALIGNED");
  assertEquals(code(mk(4, RING, 0x3000, 0x3006)), "RING_MISALIGNED");
  assertEquals(code(mk(4, MEM - 32)), "RING_UNMAPPED");
  assertEquals(code(mk(4, RING, 2 ** 53)), "RING_UNMAPPED");
  // non power of two sizes are fine
  mk(5, RING)();
  mk(2048, 0)();
  new PackedDeviceQueue({
    memory: GuestMemory.flat(0x100000),
    dma: new IdentityAddressSpace(),
    size: 32768,
    addresses: { descAddr: 0, driverAddr: 0x80000, deviceAddr: 0x80004 },
    features: 0n,
  });
});

Deno.test("packed device: one minimal hostile input per error code", () => {
  const seen = new Set<string>(["QUEUE_SIZE_INVALID", "RING_MISALIGNED", "RING_UNMAPPED"]);
  const t = (
    code: VirtqErrorCode,
    f: (r: PackedRingBuilder, d: PackedDeviceQueue) => void,
    size = 4,
    feat = 0n,
    pol: Partial<ChainPolicy> = {},
    dma?: DmaAddressSpace,
  ) => {
    expectHostile(code, f, size, feat, pol, dma);
    seen.add(code);
  };
  const N = VIRTQ_DESC_F_NEXT, W = VIRTQ_DESC_F_WRITE, I = VIRTQ_DESC_F_INDIRECT;
  t("DESC_CHAIN_LOOP", (r) => {
    // slots 1..3 then 0 (wrap flips to 0): every descriptor NEXT and available in its lap
    for (let s = 1; s < 4; s++) r.write(s, { addr: 0x8000n, len: 1, id: 0, flags: A | N });
    r.write(0, { addr: 0x8000n, len: 1, id: 0, flags: packedAvailFlags(0) | N });
  });
  t("PACKED_CHAIN_UNAVAILABLE", (r) => {
    r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: A | N });
    r.write(2, { addr: 0x8000n, len: 1, id: 0, flags: 0x8080 }); // used bits, not available
  });
  t(
    "PACKED_INDIRECT_IN_LIST",
    (r) => {
      r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: A | N });
      r.write(2, { addr: 0x9000n, len: 16, id: 0, flags: A | I });
    },
    4,
    IND,
  );
  t("HEAD_IN_USE", (r, d) => {
    // size 2: slot 1 is popped and held; then a lap-2 list over slots 0 and 1 reuses slot 1
    // while the device still owns it
    r.write(1, { addr: 0x8000n, len: 1, id: 1, flags: A });
    if (d.pop() === null) throw new Error("slot 1 not popped");
    r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: packedAvailFlags(0) });
    r.write(0, { addr: 0x8000n, len: 1, id: 0, flags: packedAvailFlags(0) | N });
  }, 2);
  t(
    "CHAIN_TOO_MANY_BYTES",
    (r) => {
      // 2 GiB buffers that the alias space folds onto 32 KiB of guest memory (65536 pieces)
      r.write(1, { addr: 0x100000n, len: 0x8000_0000, id: 0, flags: A | N });
      r.write(2, { addr: 0x100000n, len: 0x8000_0000, id: 0, flags: A });
    },
    4,
    0n,
    {},
    new AliasSpace(),
  );
  t(
    "CHAIN_TOO_MANY_SEGMENTS",
    (r) => {
      r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: A | N });
      r.write(2, { addr: 0x8000n, len: 1, id: 0, flags: A });
    },
    4,
    0n,
    { maxSegments: 1 },
  );
  t("DESC_ADDR_WRAP", (r) => r.write(1, { addr: 2n ** 64n - 8n, len: 16, id: 0, flags: A }));
  t("DESC_BUFFER_FAULT", (r) => r.write(1, { addr: BigInt(MEM), len: 16, id: 0, flags: A }));
  t("DESC_ZERO_LENGTH", (r) => r.write(1, { addr: 0x8000n, len: 0, id: 0, flags: A }));
  t("DESC_READABLE_AFTER_WRITABLE", (r) => {
    r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: A | N | W });
    r.write(2, { addr: 0x8000n, len: 1, id: 0, flags: A });
  });
  t(
    "DESC_UNKNOWN_FLAGS",
    (r) => r.write(1, { addr: 0x8000n, len: 1, id: 0, flags: A | 0x10 }),
    4,
    0n,
    {
      unknownFlags: "reject",
    },
  );
  t("INDIRECT_NOT_NEGOTIATED", (r) => r.write(1, { addr: 0x9000n, len: 16, id: 0, flags: A | I }));
  t("INDIRECT_LEN_ZERO", (r) => r.write(1, { addr: 0x9000n, len: 0, id: 0, flags: A | I }), 4, IND);
  t(
    "INDIRECT_LEN_MISALIGNED",
    (r) => r.write(1, { addr: 0x9000n, len: 24, id: 0, flags: A | I }),
    4,
    IND,
  );
  t(
    "INDIRECT_TABLE_TOO_LONG",
    (r) => r.write(1, { addr: 0x9000n, len: 80, id: 0, flags: A | I }),
    4,
    IND,
  );
  t(
    "INDIRECT_NESTED",
    (r) => {
      r.memory.writeU64(0x9000, 0x8000);
      r.memory.writeU32(0x9008, 16);
      r.memory.writeU16(0x900e, I);
      r.write(1, { addr: 0x9000n, len: 16, id: 0, flags: A | I });
    },
    4,
    IND,
  );
  t(
    "INDIRECT_WITH_NEXT",
    (r) => {
      r.write(1, { addr: 0x9000n, len: 16, id: 0, flags: A | I | N });
      r.write(2, { addr: 0x8000n, len: 1, id: 0, flags: A });
    },
    4,
    IND,
  );
  t(
    "INDIRECT_TABLE_FAULT",
    (r) => r.write(1, { addr: BigInt(MEM), len: 16, id: 0, flags: A | I }),
    4,
    IND,
  );
  assertEquals([...seen].sort(), [...PACKED_DEVICE_ERROR_CODES].sort());
});

Deno.test("packed device: inconsistent AVAIL/USED bits are not available, not an error (#31)", () => {
  const { ring, dev } = setup(4);
  for (const flags of [0, 0x8080, packedAvailFlags(0), 0x8080 | 7]) {
    ring.write(0, { addr: 0x8000n, len: 16, id: 0, flags });
    assertEquals(dev.pop(), null);
    assertEquals(dev.broken, null);
  }
});

Deno.test("packed device: chain wrapping the ring end flips the wrap counter (#32)", () => {
  const { ring, dev } = setup(3);
  // advance to slot 2 with two single-descriptor buffers
  for (let s = 0; s < 2; s++) {
    ring.write(s, { addr: 0x8000n, len: 4, id: s, flags: A });
    const c = dev.pop()!;
    dev.push(c, 0);
  }
  dev.flush();
  ring.write(0, { addr: 0x8100n, len: 8, id: 7, flags: packedAvailFlags(0) | VIRTQ_DESC_F_WRITE });
  ring.write(2, { addr: 0x8000n, len: 4, id: 9, flags: A | VIRTQ_DESC_F_NEXT });
  const c = dev.pop()!;
  assertEquals([c.id, c.headSlot, c.ringDescriptors, c.readableBytes, c.writableBytes], [
    7,
    2,
    2,
    4,
    8,
  ]);
  assertEquals(dev.availPosition, { offset: 1, wrap: 0 });
  dev.push(c, 8);
  assertEquals(dev.usedPosition, { offset: 1, wrap: 0 });
});

Deno.test("packed device: indirect flags other than WRITE are ignored; WRITE on the indirect descriptor too (#29, #34)", () => {
  const { ring, dev, memory } = setup(4, IND);
  const entry = (i: number, addr: number, len: number, flags: number, id: number) => {
    memory.writeU64(0x9000 + 16 * i, addr);
    memory.writeU32(0x9008 + 16 * i, len);
    memory.writeU16(0x900c + 16 * i, id);
    memory.writeU16(0x900e + 16 * i, flags);
  };
  entry(0, 0x8000, 4, VIRTQ_DESC_F_NEXT | 0x8080, 55); // NEXT, AVAIL, USED, id: reserved
  entry(1, 0x8100, 6, VIRTQ_DESC_F_WRITE | 0x8000, 66);
  ring.write(0, {
    addr: 0x9000n,
    len: 32,
    id: 2,
    flags: A | VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE,
  });
  const c = dev.pop()!;
  assertEquals([c.id, c.indirect, c.ringDescriptors, c.readableBytes, c.writableBytes], [
    2,
    true,
    1,
    4,
    6,
  ]);
  assertEquals([...c.readableGpa.subarray(0, 1), ...c.writableGpa.subarray(0, 1)], [
    0x8000,
    0x8100,
  ]);
});

Deno.test("packed device: used notification per driver event suppression (§2.8.10, #35)", async (t) => {
  const { featureMask: fm, VIRTIO_F_EVENT_IDX } = await import("../../../src/mod.ts");
  for (const eventIdx of [false, true]) {
    for (
      const [flags, offWrap, want] of [
        [0, 0, true], // ENABLE
        [1, 0, false], // DISABLE
        [3, 0, true], // reserved: treated as ENABLE
        [2, 0x8000, true], // DESC at slot 0 lap 1: passed by this flush (eventIdx only)
        [2, 0x8002, false], // DESC at slot 2: not yet
      ] as const
    ) {
      await t.step(`eventIdx=${eventIdx} flags=${flags} off=${offWrap.toString(16)}`, () => {
        const { ring, dev, memory, addresses } = setup(4, eventIdx ? fm(VIRTIO_F_EVENT_IDX) : 0n);
        writePackedEvent(memory, addresses.driverAddr as number, offWrap, flags);
        ring.write(0, { addr: 0x8000n, len: 4, id: 0, flags: A });
        dev.push(dev.pop()!, 0);
        const expect = flags === 2 && !eventIdx ? true : want;
        assertEquals(dev.flush(), expect);
        assertEquals(dev.flush(), false); // nothing new
      });
    }
  }
});

Deno.test("packed device: setNotifications writes the device event suppression structure", async () => {
  const { featureMask: fm, VIRTIO_F_EVENT_IDX } = await import("../../../src/mod.ts");
  const { ring, dev, memory, addresses } = setup(4, fm(VIRTIO_F_EVENT_IDX));
  const da = addresses.deviceAddr as number;
  dev.setNotifications(false);
  assertEquals(memory.readU16(da + 2), 1);
  dev.setNotifications(true);
  assertEquals([memory.readU16(da), memory.readU16(da + 2)], [0x8000, 2]);
  ring.write(0, { addr: 0x8000n, len: 4, id: 0, flags: A });
  dev.pop();
  assertEquals(memory.readU16(da), 0x8001); // kept current by pop
  const plain = setup(4);
  plain.dev.setNotifications(true);
  assertEquals(plain.memory.readU16((plain.addresses.deviceAddr as number) + 2), 0);
});

Deno.test("packed device: push validation", () => {
  const { ring, dev } = setup(4);
  ring.write(0, { addr: 0x8000n, len: 4, id: 0, flags: A | VIRTQ_DESC_F_WRITE });
  const c = dev.pop()!;
  assertEquals(assertThrows(() => dev.push(c, 5), VirtqError).code, "PUSH_INVALID");
  dev.push(c, 4);
  assertEquals(assertThrows(() => dev.push(c, 4), VirtqError).code, "PUSH_INVALID");
  assertEquals(dev.inFlight, 0);
});

Deno.test("packed device: policies allow zero-length descriptors and INDIRECT+NEXT (ignore-next)", () => {
  const { ring, dev, memory } = setup(4, IND, {
    zeroLength: "allow",
    indirectWithNext: "ignore-next",
  });
  ring.write(0, { addr: 0x8000n, len: 0, id: 0, flags: A | VIRTQ_DESC_F_NEXT });
  ring.write(1, { addr: 0x8000n, len: 4, id: 5, flags: A });
  const c = dev.pop()!;
  assertEquals([c.id, c.ringDescriptors, c.descCount, c.readableCount, c.readableBytes], [
    5,
    2,
    2,
    1,
    4,
  ]);
  memory.writeU64(0x9000, 0x8100);
  memory.writeU32(0x9008, 8);
  memory.writeU16(0x900e, VIRTQ_DESC_F_WRITE);
  // NEXT on the indirect descriptor is ignored: the list is this one slot
  ring.write(2, {
    addr: 0x9000n,
    len: 16,
    id: 6,
    flags: A | VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
  });
  const d = dev.pop()!;
  assertEquals([d.id, d.ringDescriptors, d.writableBytes], [6, 1, 8]);
  assertEquals(dev.availPosition, { offset: 3, wrap: 1 });
});

Deno.test("packed device: IN_ORDER pushes must follow pop order; full buffers batch", async () => {
  const { featureMask: fm, VIRTIO_F_IN_ORDER } = await import("../../../src/mod.ts");
  const { ring, dev } = setup(4, fm(VIRTIO_F_IN_ORDER));
  ring.write(0, { addr: 0x8000n, len: 4, id: 7, flags: A | VIRTQ_DESC_F_WRITE });
  ring.write(1, { addr: 0x8100n, len: 4, id: 8, flags: A | VIRTQ_DESC_F_WRITE });
  const a = dev.pop()!, b = dev.pop()!;
  assertEquals(assertThrows(() => dev.push(b, 4), VirtqError).code, "PUSH_INVALID");
  dev.push(a, 4); // full: can be retired by b's used descriptor
  dev.push(b, 2);
  assertEquals(dev.flush(), true);
  assertEquals(ring.read(0), { addr: 0x8000n, len: 2, id: 8, flags: 0x8080 | VIRTQ_DESC_F_WRITE });
  assertEquals(ring.read(1).flags, A | VIRTQ_DESC_F_WRITE); // untouched
  assertEquals(dev.usedPosition, { offset: 2, wrap: 1 });
});

Deno.test("packed device: segments split at region boundaries and IOMMU-style pieces; exact 64-bit addresses", () => {
  // two adjacent regions: a buffer across the boundary becomes two segments; into a hole: fault
  const memory = new GuestMemory([{ gpa: 0, size: 0x10000 }, { gpa: 0x10000, size: 0x10000 }]);
  const ring = new PackedRingBuilder(memory, RING, 4);
  const dev = new PackedDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size: 4,
    addresses: { descAddr: RING, driverAddr: RING + 64, deviceAddr: RING + 68 },
    features: 0n,
  });
  ring.write(0, { addr: 0xfff0n, len: 0x20, id: 1, flags: A });
  const c = dev.pop()!;
  assertEquals([
    c.readableCount,
    c.readableGpa[0],
    c.readableLen[0],
    c.readableGpa[1],
    c.readableLen[1],
  ], [
    2,
    0xfff0,
    0x10,
    0x10000,
    0x10,
  ]);
  ring.write(1, { addr: 0x1fff0n, len: 0x20, id: 2, flags: A });
  assertEquals(assertThrows(() => dev.pop(), VirtqError).code, "DESC_BUFFER_FAULT");
  // a bus address above 2^53 through a translating space, in 32 KiB pieces
  const alias = setup(4, 0n, {}, new AliasSpace());
  alias.ring.write(0, {
    addr: 2n ** 60n + 0x7ff0n,
    len: 0x20,
    id: 3,
    flags: A | VIRTQ_DESC_F_WRITE,
  });
  const d = alias.dev.pop()!;
  assertEquals([d.writableCount, d.writableGpa[0], d.writableGpa[1], d.writableBytes], [
    2,
    0x17ff0,
    0x10000,
    0x20,
  ]);
  assertEquals(d.descAddr(0), 2n ** 60n + 0x7ff0n);
});

Deno.test("packed device: a batch of used descriptors is published by its first one's flags at flush (§2.8.22)", () => {
  const { ring, dev } = setup(4);
  for (let s = 0; s < 3; s++) {
    ring.write(s, {
      addr: 0x8000n + BigInt(0x100 * s),
      len: 16,
      id: 10 + s,
      flags: A | VIRTQ_DESC_F_WRITE,
    });
  }
  const chains = [dev.pop()!, dev.pop()!, dev.pop()!];
  chains.forEach((c, i) => dev.push(c, i + 1));
  // before flush the first slot still holds the available descriptor: the driver sees nothing
  assertEquals(ring.read(0), { addr: 0x8000n, len: 1, id: 10, flags: A | VIRTQ_DESC_F_WRITE });
  assertEquals(dev.flush(), true);
  for (let s = 0; s < 3; s++) {
    const d = ring.read(s);
    assertEquals([d.id, d.len, d.flags], [10 + s, s + 1, 0x8080 | VIRTQ_DESC_F_WRITE]);
  }
  assertEquals(dev.flush(), false);
});
