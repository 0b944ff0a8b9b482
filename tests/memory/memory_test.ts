import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { backingCopier, backingSmallCopier, createCopyableBacking } from "../../src/memory/mod.ts";
import {
  DmaMapError,
  GuestMemory,
  hex64,
  MemoryFault,
  toU64,
  u64Add,
  u64FromParts,
  u64Hi,
  u64Lo,
} from "../../src/mod.ts";

Deno.test("u64: parts round-trip exactly, bigint above 2^53-1", () => {
  assertEquals(u64FromParts(0xffff_ffff, 0x1f_ffff), Number.MAX_SAFE_INTEGER);
  assertEquals(u64FromParts(0, 0x20_0000), 2n ** 53n);
  assertEquals(u64FromParts(1, 0x8000_0000), 2n ** 63n + 1n);
  assertEquals(hex64(2n ** 63n), "0x8000000000000000");
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v) => {
      const c = toU64(v);
      assertEquals(BigInt(u64FromParts(u64Lo(c), u64Hi(c))), v);
      assertEquals(typeof c === "number", v <= BigInt(Number.MAX_SAFE_INTEGER));
    }),
    { seed: 1, numRuns: 500 },
  );
});

Deno.test("u64Add: exact across the safe-integer edge, null on 64-bit wrap", () => {
  assertEquals(u64Add(Number.MAX_SAFE_INTEGER, 1), 2n ** 53n);
  assertEquals(u64Add(2n ** 64n - 2n, 1), 2n ** 64n - 1n);
  assertEquals(u64Add(2n ** 64n - 1n, 1), null);
});

Deno.test("GuestMemory: little-endian accessors at known offsets", () => {
  const m = new GuestMemory([{ gpa: 0x1000, size: 0x1000 }]);
  m.writeU32(0x1000, 0x11223344);
  assertEquals(m.readU8(0x1000), 0x44);
  assertEquals(m.readU16(0x1002), 0x1122);
  m.writeU64(0x1008, 2n ** 63n + 5n);
  assertEquals(m.readU64(0x1008), 2n ** 63n + 5n);
  assertEquals(m.readU8(0x100f), 0x80);
  m.writeU64(0x1010, 0x1234_5678_9abc);
  assertEquals(m.readU64(0x1010), 0x1234_5678_9abc);
  assertEquals(m.readU32(0x1014), 0x1234);
});

Deno.test("GuestMemory: holes, straddles and bad addresses raise MemoryFault", () => {
  const m = new GuestMemory([{ gpa: 0, size: 0x1000 }, { gpa: 0x2000, size: 0x1000 }]);
  const unmapped = assertThrows(() => m.readU8(0x1800), MemoryFault);
  assertEquals(unmapped.kind, "unmapped");
  assertEquals(unmapped.gpa, 0x1800);
  const straddle = assertThrows(() => m.readU32(0xffe), MemoryFault);
  assertEquals(straddle.kind, "straddle");
  assertEquals(straddle.length, 4);
  assertEquals(assertThrows(() => m.view(-1, 1), MemoryFault).kind, "invalid");
  assertThrows(() => m.view(0x2000, 0x1001), MemoryFault);
  assertEquals(m.view(0x2ff0, 0x10).length, 0x10);
  assertEquals(m.contains(0x1fff, 1), false);
});

Deno.test("GuestMemory.resolve: a fractional or NaN address or length is `invalid` whether or not its region is cached", () => {
  const m = new GuestMemory([{ gpa: 0, size: 0x1000 }, { gpa: 0x2000, size: 0x1000 }]);
  const bad: [number, number][] = [[16.5, 4], [16, 4.5], [16.5, 0.5], [NaN, 1], [0x10, NaN]];
  for (const [gpa, len] of bad) {
    // cold: neither region cached
    const cold = new GuestMemory([{ gpa: 0, size: 0x1000 }]);
    assertEquals(assertThrows(() => cold.resolve(gpa, len), MemoryFault).kind, "invalid");
    // warm: the region is the last one resolved, then the one before it
    m.readU8(0);
    assertEquals(assertThrows(() => m.resolve(gpa, len), MemoryFault).kind, "invalid");
    m.readU8(0);
    m.readU8(0x2000);
    assertEquals(assertThrows(() => m.resolve(gpa, len), MemoryFault).kind, "invalid");
  }
  // the accessors go through resolve: no silent read at a truncated offset
  m.readU8(0);
  assertEquals(assertThrows(() => m.readU32(16.5), MemoryFault).kind, "invalid");
  assertEquals(assertThrows(() => m.readU8(0.5), MemoryFault).kind, "invalid");
});

Deno.test("GuestMemory: regions must be page-aligned and disjoint", () => {
  assertThrows(() => new GuestMemory([{ gpa: 0x10, size: 0x1000 }]), RangeError);
  assertThrows(() => new GuestMemory([{ gpa: 0, size: 0x2000 }, { gpa: 0x1000, size: 0x1000 }]));
});

Deno.test("GuestMemory: copy works inside and across regions; observer sees bulk accesses", () => {
  const m = new GuestMemory([{ gpa: 0, size: 0x1000 }, { gpa: 0x1000, size: 0x1000 }]);
  const seen: string[] = [];
  m.observer = {
    onRead: (g, n) => seen.push(`r${g}:${n}`),
    onWrite: (g, n) => seen.push(`w${g}:${n}`),
  };
  m.write(0x10, new Uint8Array([1, 2, 3, 4]));
  m.copy(0x1000, 0x10, 4);
  m.copy(0x12, 0x10, 4); // overlapping, same region
  const out = new Uint8Array(6);
  m.read(0x10, out);
  assertEquals([...out], [1, 2, 1, 2, 3, 4]);
  assertEquals(m.readU32(0x1000), 0x04030201);
  assertEquals(seen, ["w16:4", "r16:4", "w4096:4", "r16:4", "w18:4", "r16:6"]);
});

Deno.test("GuestMemory: cross-region copies of 0, 1, 3, 127, 128, 129 and 4096 bytes; overlapping same-region copies both ways", () => {
  const m = new GuestMemory([{ gpa: 0, size: 0x2000 }, { gpa: 0x4000, size: 0x2000 }]);
  const pattern = (g: number) => (g * 7 + 3) & 0xff;
  for (
    const [len, srcOff, dstOff] of [[0, 5, 9], [1, 5, 9], [3, 1, 2], [127, 1, 6], [128, 0, 0], [
      129,
      3,
      0,
    ], [4096, 0x1000, 0x801]]
  ) {
    for (let g = 0; g < 0x2000; g++) (m.writeU8(g, pattern(g)), m.writeU8(0x4000 + g, 0xee));
    const seen: string[] = [];
    m.observer = {
      onRead: (g, n) => seen.push(`r${g}:${n}`),
      onWrite: (g, n) => seen.push(`w${g}:${n}`),
    };
    m.copy(0x4000 + dstOff, srcOff, len);
    m.observer = null;
    assertEquals(seen, [`r${srcOff}:${len}`, `w${0x4000 + dstOff}:${len}`]);
    const got = [...m.view(0x4000, 0x2000)];
    const want = got.map((_, i) =>
      i >= dstOff && i < dstOff + len ? pattern(srcOff + i - dstOff) : 0xee
    );
    assertEquals(got, want, `length ${len}`); // exact bytes, nothing outside the range touched
  }
  // overlapping copies inside one region behave like memmove in both directions
  for (const [dst, src, len] of [[0x12, 0x10, 100], [0x10, 0x12, 100], [0x100, 0x80, 200]]) {
    for (let g = 0; g < 0x400; g++) m.writeU8(g, pattern(g));
    const before = [...m.view(0, 0x400)];
    m.copy(dst, src, len);
    const want = before.slice();
    for (let i = 0; i < len; i++) want[dst + i] = before[src + i];
    assertEquals([...m.view(0, 0x400)], want);
  }
  assertThrows(() => m.copy(0x4000, 0x1ff0, 0x20), MemoryFault); // source straddles a region end
});

Deno.test("GuestMemory: regions may share one backing store at page offsets (backingOffset)", () => {
  const backing = new ArrayBuffer(0x3000);
  const m = new GuestMemory([
    { gpa: 0, size: 0x1000, backing },
    { gpa: 0x10_0000, size: 0x2000, backing, backingOffset: 0x1000 },
  ]);
  m.writeU32(0x10_0004, 0xdeadbeef);
  assertEquals(new DataView(backing).getUint32(0x1004, true), 0xdeadbeef); // at the offset
  assertEquals(m.readU32(4), 0); // the first region is untouched
  m.copy(0x10, 0x10_0004, 4); // across regions on one store
  assertEquals(m.readU32(0x10), 0xdeadbeef);
  assertEquals(m.regions[1].bytes.byteOffset, 0x1000);
  const bad = (spec: { backingOffset: number; backing?: ArrayBuffer; size?: number }) =>
    assertThrows(() => new GuestMemory([{ gpa: 0, size: 0x1000, ...spec }]), RangeError);
  bad({ backingOffset: 0x800, backing }); // not a page multiple
  bad({ backingOffset: -0x1000, backing });
  bad({ backingOffset: 0x1000 }); // no backing to offset into
  bad({ backingOffset: 0x2000, backing, size: 0x2000 }); // runs past the store's end
});

Deno.test("createCopyableBacking: a zeroed store in 64 KiB pages whose copier is a memmove", () => {
  const buf = createCopyableBacking(0x1_1000)!;
  assertEquals(buf.byteLength, 0x2_0000); // rounded up to whole WebAssembly pages
  const b = new Uint8Array(buf);
  assertEquals(b.every((x) => x === 0), true);
  const copy = backingCopier(buf)!;
  const pattern = (i: number) => (i * 31 + 5) & 0xff;
  for (const [dst, src, len] of [[0x1000, 0x10, 1500], [0x12, 0x10, 100], [0x10, 0x12, 100]]) {
    for (let i = 0; i < 0x2000; i++) b[i] = pattern(i);
    const want = [...b.subarray(0, 0x2000)];
    want.copyWithin(dst, src, src + len); // the reference: copyWithin is overlap-safe
    copy(dst, src, len);
    assertEquals([...b.subarray(0, 0x2000)], want, `${dst} <- ${src} x ${len}`);
  }
  assertEquals(backingCopier(new ArrayBuffer(0x1000)), null); // a plain store has none
  assertEquals(createCopyableBacking(0), null);
  assertEquals(createCopyableBacking(2 ** 32 + 1), null); // beyond 32-bit WebAssembly memory
});

Deno.test("backingSmallCopier: the bytes copyWithin gives for any non-overlapping copy", () => {
  const buf = createCopyableBacking(0x1_0000)!;
  const small = backingSmallCopier(buf);
  assertEquals(backingSmallCopier(new ArrayBuffer(0x1000)), null); // a plain store has none
  if (small === null) return; // no WebAssembly SIMD here: callers use their word loop
  const b = new Uint8Array(buf);
  fc.assert(
    fc.property(
      fc.nat({ max: 0x600 }),
      fc.nat({ max: 0x600 }),
      fc.nat({ max: 300 }),
      fc.nat(),
      (dst, src, len, seed) => {
        if (!(dst + len <= src || src + len <= dst)) return; // overlapping: not its contract
        for (let i = 0; i < 0x800; i++) b[i] = (i * 31 + seed) & 0xff;
        const want = [...b.subarray(0, 0x800)];
        want.copyWithin(dst, src, src + len);
        small(dst, src, len);
        assertEquals([...b.subarray(0, 0x800)], want, `${dst} <- ${src} x ${len}`);
      },
    ),
    { seed: 3, numRuns: 300 },
  );
});

Deno.test("hex64 never throws: error messages can name any address a caller passed", () => {
  assertEquals(hex64(0x1000), "0x0000000000001000");
  assertEquals(hex64(4096.5), "4096.5");
  assertEquals(hex64(-1), "-1");
  assertEquals(hex64(2n ** 64n), "18446744073709551616");
  const e = new DmaMapError("mask", 4096.5, 8, "direct");
  assertEquals(e.address, 4096.5);
});
