import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  DmaFault,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  isVirtqError,
  MemoryFault,
  SplitDeviceQueue,
  type U64,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTQ_DESC_F_INDIRECT as IND,
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WR,
  VIRTQ_ERRORS,
  VirtqError,
  type VirtqErrorCode,
} from "../../../src/mod.ts";
import { AliasSpace, AVAIL, DATA, DESC, Rig, type RigOptions, USED } from "../_split_rig.ts";

const INDF = featureMask(VIRTIO_F_INDIRECT_DESC);
const TABLE = 0x8000; // indirect tables go here

function catchVirtq(f: () => unknown): VirtqError {
  const e = assertThrows(f);
  assert(e instanceof VirtqError, `expected VirtqError, got ${e}`);
  return e;
}

/**
 * Completes one valid chain (head size-1) first, then lets `setup` build a hostile chain and
 * offer it; asserts the exact code, the broken state, that later pops return null (even for a
 * valid chain), and that the completed buffer stays completed.
 */
function expectBreak(
  code: VirtqErrorCode,
  setup: (r: Rig) => void,
  o: RigOptions = {},
): VirtqError {
  const r = new Rig(o);
  const good = r.size - 1;
  r.desc(good, DATA, 16, WR).offer(good);
  const c = r.device.pop()!;
  assertEquals(c.id, good);
  r.device.push(c, 5);
  r.device.flush();
  setup(r);
  const e = catchVirtq(() => r.device.pop());
  assertEquals(e.code, code, e.message);
  assertEquals(e.side, "device");
  assertEquals(r.device.broken, e);
  // A valid chain after the break is not consumed.
  r.desc(good, DATA, 16, WR).offer(good);
  assertEquals(r.device.pop(), null);
  assertEquals(r.device.pop(), null);
  // Completed work stays completed.
  assertEquals(r.usedIdx(), 1);
  assertEquals(r.usedElem(0), [good, 5]);
  return e;
}

Deno.test("device activation: QUEUE_SIZE_INVALID for 0, 3, 65536", () => {
  for (const size of [0, 3, 65536]) {
    const e = catchVirtq(() => new Rig({ size }));
    assertEquals(e.code, "QUEUE_SIZE_INVALID");
  }
});

Deno.test("device activation: RING_MISALIGNED for each area (desc 16, avail 2, used 4)", () => {
  const memory = GuestMemory.flat(1 << 16);
  const dma = new IdentityAddressSpace();
  const mk = (descAddr: number, driverAddr: number, deviceAddr: number) =>
    new SplitDeviceQueue({
      memory,
      dma,
      size: 8,
      addresses: { descAddr, driverAddr, deviceAddr },
      features: 0n,
    });
  mk(0x10, 0x1002, 0x2004); // ok: exactly the minimum alignments
  for (const a of [[0x8, 0x1000, 0x2000], [0, 0x1001, 0x2000], [0, 0x1000, 0x2002]]) {
    assertEquals(catchVirtq(() => mk(a[0], a[1], a[2])).code, "RING_MISALIGNED");
  }
});

Deno.test("device activation: RING_UNMAPPED (outside memory, straddling, DMA fault) with cause", () => {
  const memory = new GuestMemory([{ gpa: 0, size: 0x2000 }, { gpa: 0x4000, size: 0x1000 }]);
  const mk = (deviceAddr: U) =>
    new SplitDeviceQueue({
      memory,
      dma: new IdentityAddressSpace(),
      size: 8,
      addresses: { descAddr: 0, driverAddr: 0x1000, deviceAddr },
      features: 0n,
    });
  type U = number | bigint;
  const hole = catchVirtq(() => mk(0x3000));
  assertEquals(hole.code, "RING_UNMAPPED");
  assert(hole.cause instanceof MemoryFault);
  assertEquals(catchVirtq(() => mk(0x1ff0)).code, "RING_UNMAPPED"); // runs past the region
  const dmaf = catchVirtq(() => mk(2n ** 60n));
  assertEquals(dmaf.code, "RING_UNMAPPED");
  assert(dmaf.cause instanceof DmaFault);
});

Deno.test("AVAIL_IDX_JUMP: avail idx more than queue size ahead (#8)", () => {
  expectBreak("AVAIL_IDX_JUMP", (r) => r.setAvailIdx(r.availIdx + r.size + 1));
  // "Backwards" is a huge jump in u16 arithmetic.
  expectBreak("AVAIL_IDX_JUMP", (r) => r.setAvailIdx(r.availIdx - 1));
});

Deno.test("AVAIL_HEAD_OUT_OF_RANGE: ring entry >= queue size (#9)", () => {
  const e = expectBreak("AVAIL_HEAD_OUT_OF_RANGE", (r) => r.offer(r.size));
  assertEquals(e.index, 8);
});

Deno.test("HEAD_IN_USE: the same head offered while in flight (#10)", () => {
  expectBreak("HEAD_IN_USE", (r) => {
    r.desc(0, DATA, 8, 0).offer(0);
    r.device.pop();
    r.offer(0);
  });
});

Deno.test("DESC_NEXT_OUT_OF_RANGE: next >= queue size, and >= indirect entries (#12)", () => {
  expectBreak("DESC_NEXT_OUT_OF_RANGE", (r) => r.desc(0, DATA, 8, NEXT, 8).offer(0));
  expectBreak("DESC_NEXT_OUT_OF_RANGE", (r) => {
    r.desc(0, DATA, 8, NEXT, 2, TABLE).desc(1, DATA, 8, 0, 0, TABLE);
    r.desc(0, TABLE, 32, IND).offer(0);
  }, { features: INDF });
});

Deno.test("DESC_CHAIN_LOOP: a loop in the ring and in an indirect table (#13)", () => {
  expectBreak(
    "DESC_CHAIN_LOOP",
    (r) => r.desc(0, DATA, 8, NEXT, 1).desc(1, DATA, 8, NEXT, 0).offer(0),
  );
  expectBreak("DESC_CHAIN_LOOP", (r) => r.desc(0, DATA, 8, NEXT, 0).offer(0)); // self loop
  expectBreak("DESC_CHAIN_LOOP", (r) => {
    r.desc(0, DATA, 8, NEXT, 1, TABLE).desc(1, DATA, 8, NEXT, 0, TABLE);
    r.desc(0, TABLE, 32, IND).offer(0);
  }, { features: INDF });
});

Deno.test("CHAIN_TOO_MANY_BYTES: total length above 2^32 - 1 (#14)", () => {
  expectBreak("CHAIN_TOO_MANY_BYTES", (r) => {
    r.desc(0, 1 << 20, 0x8000_0000, NEXT, 1).desc(1, 1 << 20, 0x8000_0000, 0).offer(0);
  }, { dma: new AliasSpace() });
});

Deno.test("DESC_ADDR_WRAP: addr + len beyond 2^64 (#15)", () => {
  expectBreak("DESC_ADDR_WRAP", (r) => r.desc(0, 2n ** 64n - 8n, 16, 0).offer(0));
});

Deno.test("DESC_BUFFER_FAULT: not backed by memory, and a DMA fault (cause attached) (#15, #47)", () => {
  const a = expectBreak("DESC_BUFFER_FAULT", (r) => r.desc(0, 0x10_0000_0000, 8, 0).offer(0));
  assertEquals(a.index, 0);
  const b = expectBreak("DESC_BUFFER_FAULT", (r) => r.desc(0, 2n ** 62n, 8, 0).offer(0));
  assert(b.cause instanceof DmaFault);
  // A buffer running past the end of memory.
  expectBreak("DESC_BUFFER_FAULT", (r) => r.desc(0, (1 << 20) - 4, 8, 0).offer(0));
});

Deno.test("DESC_ZERO_LENGTH: rejected by default, accepted under policy allow (#16)", () => {
  expectBreak("DESC_ZERO_LENGTH", (r) => r.desc(0, DATA, 0, 0).offer(0));
  const r = new Rig({ policy: { zeroLength: "allow" } });
  r.desc(0, DATA, 0, NEXT, 1).desc(1, DATA, 4, WR).offer(0);
  const c = r.device.pop()!;
  assertEquals([c.descCount, c.readableCount, c.writableBytes], [2, 0, 4]);
});

Deno.test("DESC_READABLE_AFTER_WRITABLE: message framing (#17), also across an indirect table", () => {
  expectBreak("DESC_READABLE_AFTER_WRITABLE", (r) => {
    r.desc(0, DATA, 8, WR | NEXT, 1).desc(1, DATA, 8, 0).offer(0);
  });
  expectBreak("DESC_READABLE_AFTER_WRITABLE", (r) => {
    r.desc(0, DATA, 8, 0, 0, TABLE);
    r.desc(0, DATA, 8, WR | NEXT, 1).desc(1, TABLE, 16, IND).offer(0);
  }, { features: INDF });
});

Deno.test("DESC_UNKNOWN_FLAGS: ignored by default, rejected under policy (#19)", () => {
  const r = new Rig();
  r.desc(0, DATA, 8, 0x10).offer(0);
  assertEquals(r.device.pop()!.readableBytes, 8);
  expectBreak("DESC_UNKNOWN_FLAGS", (r) => r.desc(0, DATA, 8, 0x8000).offer(0), {
    policy: { unknownFlags: "reject" },
  });
});

Deno.test("CHAIN_TOO_MANY_SEGMENTS: device limit (#20), counting translated segments", () => {
  expectBreak("CHAIN_TOO_MANY_SEGMENTS", (r) => {
    r.desc(0, DATA, 8, NEXT, 1).desc(1, DATA, 8, NEXT, 2).desc(2, DATA, 8, 0).offer(0);
  }, { policy: { maxSegments: 2 } });
  // One descriptor that translates into 3 segments (alias window of 64 KiB).
  expectBreak("CHAIN_TOO_MANY_SEGMENTS", (r) => r.desc(0, 1 << 20, 0x30000, 0).offer(0), {
    policy: { maxSegments: 2 },
    dma: new AliasSpace(),
  });
});

Deno.test("IN_ORDER_VIOLATION: non-sequential next, table entries, and out-of-order head", () => {
  const f = featureMask(VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC);
  const mk = () => new Rig({ features: f });
  let r = mk();
  r.desc(0, DATA, 8, NEXT, 2).desc(2, DATA, 8, 0).offer(0);
  assertEquals(catchVirtq(() => r.device.pop()).code, "IN_ORDER_VIOLATION");
  r = mk();
  r.desc(1, DATA, 8, 0).offer(1); // in-order position is 0
  assertEquals(catchVirtq(() => r.device.pop()).code, "IN_ORDER_VIOLATION");
  r = mk();
  r.desc(0, DATA, 8, NEXT, 2, TABLE).desc(2, DATA, 8, 0, 0, TABLE);
  r.desc(0, TABLE, 48, IND).offer(0);
  assertEquals(catchVirtq(() => r.device.pop()).code, "IN_ORDER_VIOLATION");
  assertEquals(r.device.broken?.code, "IN_ORDER_VIOLATION");
  assertEquals(r.device.pop(), null);
  // Valid in-order: chains at 0..1, 2, then the last descriptor wraps to 0 (next of 7 is 0).
  r = mk();
  r.desc(0, DATA, 8, NEXT, 1).desc(1, DATA, 8, 0).desc(2, DATA, 8, 0).offer(0, 2);
  assertEquals([r.device.pop()!.id, r.device.pop()!.id], [0, 2]);
});

Deno.test("INDIRECT_NOT_NEGOTIATED (#22)", () => {
  expectBreak("INDIRECT_NOT_NEGOTIATED", (r) => {
    r.desc(0, DATA, 8, 0, 0, TABLE).desc(0, TABLE, 16, IND).offer(0);
  });
});

Deno.test("INDIRECT_LEN_MISALIGNED / INDIRECT_LEN_ZERO / INDIRECT_TABLE_TOO_LONG (#23-#25)", () => {
  const o = { features: INDF };
  expectBreak("INDIRECT_LEN_MISALIGNED", (r) => r.desc(0, TABLE, 24, IND).offer(0), o);
  expectBreak("INDIRECT_LEN_ZERO", (r) => r.desc(0, TABLE, 0, IND).offer(0), o);
  expectBreak("INDIRECT_TABLE_TOO_LONG", (r) => r.desc(0, TABLE, 16 * 9, IND).offer(0), o);
});

Deno.test("INDIRECT_NESTED (#26)", () => {
  expectBreak("INDIRECT_NESTED", (r) => {
    r.desc(0, TABLE + 0x100, 16, IND, 0, TABLE);
    r.desc(0, TABLE, 16, IND).offer(0);
  }, { features: INDF });
});

Deno.test("INDIRECT_WITH_NEXT: rejected by default; ignore-next policy ends the chain (#27)", () => {
  const setup = (r: Rig) => {
    r.desc(0, DATA, 8, 0, 0, TABLE);
    r.desc(0, TABLE, 16, IND | NEXT, 1).desc(1, DATA, 8, 0).offer(0);
  };
  expectBreak("INDIRECT_WITH_NEXT", setup, { features: INDF });
  const r = new Rig({ features: INDF, policy: { indirectWithNext: "ignore-next" } });
  setup(r);
  const c = r.device.pop()!;
  assertEquals([c.descCount, c.readableBytes, c.indirect], [2, 8, true]);
});

Deno.test("INDIRECT_TABLE_FAULT: table outside memory / through a DMA fault (#30)", () => {
  const o = { features: INDF };
  const a = expectBreak(
    "INDIRECT_TABLE_FAULT",
    (r) => r.desc(0, 0x10_0000_0000, 16, IND).offer(0),
    o,
  );
  assert(a.cause instanceof MemoryFault);
  const b = expectBreak("INDIRECT_TABLE_FAULT", (r) => r.desc(0, 2n ** 60n, 16, IND).offer(0), o);
  assert(b.cause instanceof DmaFault);
});

Deno.test("valid: normal descriptors then one indirect (#28); WRITE on the indirect ignored (#29)", () => {
  const r = new Rig({ features: INDF });
  r.desc(0, DATA + 0x100, 4, NEXT, 1, TABLE).desc(1, DATA + 0x200, 6, WR, 0, TABLE);
  r.desc(0, DATA, 8, NEXT, 3).desc(3, TABLE, 32, IND | WR).offer(0);
  const c = r.device.pop()!;
  assertEquals(c.indirect, true);
  assertEquals(c.descCount, 4); // 2 ring descriptors + 2 table entries, each recorded once
  assertEquals(c.ringDescriptors, 2);
  assertEquals([c.readableCount, c.readableBytes, c.writableCount, c.writableBytes], [2, 12, 1, 6]);
  assertEquals([c.readableGpa[0], c.readableGpa[1], c.writableGpa[0]], [
    DATA,
    DATA + 0x100,
    DATA + 0x200,
  ]);
  assertEquals([...c.descInIndirect.subarray(0, 4)], [0, 0, 1, 1]);
});

Deno.test("valid: a buffer split by translation and by adjacent memory regions", () => {
  const memory = new GuestMemory([{ gpa: 0, size: 0x10000 }, { gpa: 0x10000, size: 0x10000 }]);
  const r = new Rig({ memory });
  r.desc(0, 0xff00, 0x200, WR).offer(0);
  const c = r.device.pop()!;
  assertEquals([c.writableCount, c.writableGpa[0], c.writableLen[0], c.writableGpa[1]], [
    2,
    0xff00,
    0x100,
    0x10000,
  ]);
  // High bus addresses stay exact (no rounding): alias maps 2^60 + 0x10 into the window.
  const r2 = new Rig({ dma: new AliasSpace() });
  r2.desc(0, 2n ** 60n + 0x10n, 8, 0).offer(0);
  const c2 = r2.device.pop()!;
  assertEquals(c2.descAddr(0), 2n ** 60n + 0x10n);
  assertEquals(c2.readableGpa[0], DATA + 0x10);
});

Deno.test("TOCTOU: descriptors changed after pop do not change the popped chain (#21)", () => {
  const r = new Rig();
  r.desc(0, DATA, 8, NEXT, 1).desc(1, DATA + 8, 8, WR).offer(0);
  const c = r.device.pop()!;
  r.desc(1, DATA + 0x100, 0x1000, 0); // driver rewrites after pop
  assertEquals([c.writableGpa[0], c.writableBytes, c.descLen[1]], [DATA + 8, 8, 8]);
});

Deno.test("push: PUSH_INVALID for a chain not in flight or an over-long written", () => {
  const r = new Rig();
  r.desc(0, DATA, 8, WR).offer(0);
  const c = r.device.pop()!;
  assertEquals(catchVirtq(() => r.device.push(c, 9)).code, "PUSH_INVALID");
  r.device.push(c, 8);
  assertEquals(catchVirtq(() => r.device.push(c, 8)).code, "PUSH_INVALID");
  assertEquals(r.device.broken, null); // api errors break nothing
  assertEquals(r.device.flush(), true);
  assertEquals(r.usedElem(0), [0, 8]);
});

Deno.test("reset: clears broken state and positions; the queue works again", () => {
  const r = new Rig();
  r.offer(9);
  assert(isVirtqError(assertThrows(() => r.device.pop()), "AVAIL_HEAD_OUT_OF_RANGE"));
  r.device.reset();
  assertEquals(r.device.broken, null);
  r.memory.fill(AVAIL, 0x1000, 0);
  r.memory.fill(USED, 0x1000, 0);
  r.availIdx = 0;
  r.desc(0, DATA, 8, 0).offer(0);
  r.device.activate();
  assertEquals(r.device.pop()!.id, 0);
  assertEquals(r.device.inFlight, 1);
  void DESC;
});

Deno.test("empty ring and spurious polls return null without breaking (#11)", () => {
  const r = new Rig();
  for (let i = 0; i < 3; i++) assertEquals(r.device.pop(), null);
  assertEquals(r.device.broken, null);
});

Deno.test("valid: a buffer spanning two IOMMU-like mappings becomes two GPA segments (#46)", () => {
  // Bus pages >= 0x100 map in reverse order onto GPA pages 0x20..0x2f; rings are identity.
  class Swap {
    readonly name = "swap";
    translate(bus: U64, length: number, _a: number, out: { gpa: number; length: number }) {
      const b = Number(bus);
      if (b < 0x10000) {
        out.gpa = b;
        out.length = Math.min(length, 0x10000 - b);
        return;
      }
      const page = (b >> 12) - 0x100;
      if (page < 0 || page > 15) throw new DmaFault("unmapped", bus, length, 1, "swap");
      const off = b & 0xfff;
      out.gpa = (0x2f - page) * 0x1000 + off;
      out.length = Math.min(length, 0x1000 - off);
    }
  }
  const r = new Rig({ dma: new Swap() });
  r.desc(0, 0x100f00, 0x200, WR).offer(0);
  const c = r.device.pop()!;
  assertEquals(c.writableCount, 2);
  assertEquals([c.writableGpa[0], c.writableLen[0]], [0x2ff00, 0x100]);
  assertEquals([c.writableGpa[1], c.writableLen[1]], [0x2e000, 0x100]);
  assertEquals(c.writeFrom(new Uint8Array(0x200).fill(7)), 0x200);
  assertEquals([r.memory.readU8(0x2ffff), r.memory.readU8(0x2e0ff), r.memory.readU8(0x2e100)], [
    7,
    7,
    0,
  ]);
  // Past the last mapping: DESC_BUFFER_FAULT with the DmaFault as cause.
  const r2 = new Rig({ dma: new Swap() });
  r2.desc(0, 0x10ff00, 0x200, 0).offer(0);
  const e = catchVirtq(() => r2.device.pop());
  assertEquals(e.code, "DESC_BUFFER_FAULT");
  assert(e.cause instanceof DmaFault);
});

Deno.test("translation: a DMA view that over-reports its length is clamped to the buffer", () => {
  // Identity below 2^52, 2^52 + x -> x above it; every translation claims 4 KiB more than asked.
  const over = {
    name: "over-report",
    translate(bus: U64, length: number, _a: number, out: { gpa: number; length: number }) {
      const b = Number(bus); // exact: every bus address here is below 2^53
      out.gpa = b >= 2 ** 52 ? b - 2 ** 52 : b;
      out.length = length + 4096;
    },
  };
  const r = new Rig({ dma: over });
  r.desc(0, DATA, 8, NEXT, 1).desc(1, DATA + 0x100, 64, NEXT | WR, 2);
  r.desc(2, 2n ** 52n + BigInt(DATA + 0x200), 16, WR).offer(0); // exact-u64 path
  const c = r.device.pop()!;
  assertEquals([c.readableCount, c.readableLen[0], c.readableBytes], [1, 8, 8]);
  assertEquals([c.writableCount, [...c.writableLen.subarray(0, 2)], c.writableBytes], [
    2,
    [64, 16],
    80,
  ]);
  assertEquals([...c.writableGpa.subarray(0, 2)], [DATA + 0x100, DATA + 0x200]);
});

Deno.test("CHAIN_TOO_MANY_BYTES boundary: 2^32 - 1 bytes accepted, 2^32 rejected (policy)", () => {
  // The spec allows exactly 2^32 bytes; used len is le32, so 2^32 is rejected by policy.
  assert(VIRTQ_ERRORS.CHAIN_TOO_MANY_BYTES.spec.includes("policy"));
  const o = { dma: new AliasSpace(), policy: { maxSegments: 1 << 17 } };
  const ok = new Rig(o);
  ok.desc(0, 1 << 20, 0x8000_0000, NEXT, 1).desc(1, 1 << 20, 0x7fff_ffff, 0).offer(0);
  const c = ok.device.pop()!;
  assertEquals(c.readableBytes, 0xffff_ffff);
  assertEquals(ok.device.broken, null);
  const bad = new Rig(o);
  bad.desc(0, 1 << 20, 0x8000_0000, NEXT, 1).desc(1, 1 << 20, 0x8000_0000, 0).offer(0);
  assertEquals(catchVirtq(() => bad.device.pop()).code, "CHAIN_TOO_MANY_BYTES");
});
