// Known answers for the vhost-user message codec (QEMU docs/interop/vhost-user.rst "Message
// Specification"): byte layouts of every front-end message we send and checks on what we read.
// Pure: no FFI, runs under `deno task test`.

import { assertEquals, assertThrows } from "@std/assert";
import {
  checkReplyHeader,
  decodeConfig,
  decodeHeader,
  decodeIotlbMsg,
  decodeVringState,
  encodeBackendReply,
  encodeConfig,
  encodeEmpty,
  encodeIotlbMsg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  featureBitNames,
  outcomeOf,
  protocolFeatureNames,
  VHOST_USER_REQUEST as R,
  VhostUserError,
} from "../../src/vhost_user/mod.ts";

function buf(): { v: DataView; b: Uint8Array } {
  const b = new Uint8Array(4096);
  return { v: new DataView(b.buffer), b };
}

function hex(b: Uint8Array, n: number): string {
  return Array.from(b.subarray(0, n), (x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("codec: GET_FEATURES is a 12-byte header, version 1, no payload", () => {
  const { v, b } = buf();
  assertEquals(encodeEmpty(v, R.GET_FEATURES), 12);
  assertEquals(hex(b, 12), "01000000" + "01000000" + "00000000");
});

Deno.test("codec: SET_FEATURES with need_reply (flags 0x9) and a u64 payload", () => {
  const { v, b } = buf();
  assertEquals(encodeU64(v, R.SET_FEATURES, 0x1_4000_0000n, true), 20);
  assertEquals(hex(b, 20), "02000000" + "09000000" + "08000000" + "0000004001000000");
});

Deno.test("codec: vring state (SET_VRING_BASE packed fresh ring = 0x8000)", () => {
  const { v, b } = buf();
  assertEquals(encodeVringState(v, R.SET_VRING_BASE, 1, 0x8000), 20);
  assertEquals(hex(b, 20), "0a000000" + "01000000" + "08000000" + "01000000" + "00800000");
});

Deno.test("codec: SET_VRING_ADDR lays out index, flags, desc, used, avail, log (40 bytes)", () => {
  const { v, b } = buf();
  const n = encodeVringAddr(v, {
    index: 2,
    flags: 0,
    desc: 0x7f00_0000_1000n,
    used: 0x7f00_0000_3000n,
    avail: 0x7f00_0000_2000n,
    log: 0n,
  });
  assertEquals(n, 52);
  assertEquals(
    hex(b, 52),
    "09000000" + "01000000" + "28000000" + "02000000" + "00000000" +
      "00100000007f0000" + "00300000007f0000" + "00200000007f0000" +
      "0000000000000000",
  );
});

Deno.test("codec: SET_MEM_TABLE: nregions, padding, then gpa/size/uaddr/offset per region", () => {
  const { v, b } = buf();
  const n = encodeMemTable(v, [{
    guestPhysAddr: 0x4000_0000n,
    memorySize: 0x40_0000n,
    userspaceAddr: 0x7f12_3456_7000n,
    mmapOffset: 0n,
  }]);
  assertEquals(n, 12 + 8 + 32);
  assertEquals(v.getUint32(8, true), 40);
  assertEquals(
    hex(b, n).slice(24),
    "01000000" + "00000000" + "0000004000000000" + "0000400000000000" + "0070563412" +
      "7f0000" + "0000000000000000",
  );
  assertThrows(
    () =>
      encodeMemTable(
        v,
        new Array(9).fill({
          guestPhysAddr: 0n,
          memorySize: 4096n,
          userspaceAddr: 0n,
          mmapOffset: 0n,
        }),
      ),
    VhostUserError,
    "BAD_ARGUMENT",
  );
});

Deno.test("codec: IOTLB_MSG UPDATE: iova, size, uaddr, perm u8, type u8, padded to 32", () => {
  const { v, b } = buf();
  const n = encodeIotlbMsg(v, {
    iova: 0xffff_f000n,
    size: 0x1000n,
    uaddr: 0x7f00_0000_0000n,
    perm: 3,
    type: 2,
  }, true);
  assertEquals(n, 44);
  assertEquals(
    hex(b, 44),
    "16000000" + "09000000" + "20000000" + "00f0ffff00000000" + "0010000000000000" +
      "00000000007f0000" + "03" + "02" + "000000000000",
  );
});

Deno.test("codec: GET_CONFIG sends offset, size, flags and size zero bytes", () => {
  const { v, b } = buf();
  const n = encodeConfig(v, R.GET_CONFIG, 0, 8, 0, null);
  assertEquals(n, 12 + 12 + 8);
  assertEquals(
    hex(b, n),
    "18000000" + "01000000" + "14000000" + "00000000" + "08000000" +
      "00000000" + "0000000000000000",
  );
});

Deno.test("codec: back-end reply has the reply flag (0x5) and a u64 result", () => {
  const { v, b } = buf();
  assertEquals(encodeBackendReply(v, 1, 0n), 20);
  assertEquals(hex(b, 20), "01000000" + "05000000" + "08000000" + "0000000000000000");
});

Deno.test("codec: header checks: version, reply flag, request, size", () => {
  const { v } = buf();
  v.setUint32(0, R.GET_FEATURES, true);
  v.setUint32(4, 0x5, true);
  v.setUint32(8, 8, true);
  const h = decodeHeader(v);
  checkReplyHeader(h, R.GET_FEATURES, 8);
  assertThrows(() => checkReplyHeader(h, R.GET_PROTOCOL_FEATURES, 8), VhostUserError, "BAD_REPLY");
  assertThrows(() => checkReplyHeader(h, R.GET_FEATURES, 16), VhostUserError, "BAD_REPLY");
  v.setUint32(4, 0x1, true);
  assertThrows(() => checkReplyHeader(decodeHeader(v), R.GET_FEATURES), VhostUserError, "reply");
  v.setUint32(4, 0x6, true); // version 2
  assertThrows(() => decodeHeader(v), VhostUserError, "version");
  v.setUint32(4, 0x5, true);
  v.setUint32(8, 1 << 20, true);
  assertThrows(() => decodeHeader(v), VhostUserError, "BAD_REPLY");
});

Deno.test("codec: GET_VRING_BASE reply must name the asked index", () => {
  const p = new DataView(new ArrayBuffer(8));
  p.setUint32(0, 1, true);
  p.setUint32(4, 0x8005, true);
  assertEquals(decodeVringState(p, 1), { index: 1, num: 0x8005 });
  assertThrows(() => decodeVringState(p, 0), VhostUserError, "BAD_REPLY");
});

Deno.test("codec: GET_CONFIG reply: size echoed; empty payload is the back-end's error", () => {
  const p = new DataView(new ArrayBuffer(12 + 4));
  p.setUint32(4, 4, true);
  p.setUint8(12, 0xab);
  assertEquals(decodeConfig(p, 4).data, new Uint8Array([0xab, 0, 0, 0]));
  assertThrows(() => decodeConfig(p, 8), VhostUserError, "BAD_REPLY");
  assertThrows(() => decodeConfig(new DataView(new ArrayBuffer(0)), 4), VhostUserError, "NACK");
});

Deno.test("codec: IOTLB MISS from the back-end; unknown type or perm is refused", () => {
  const p = new DataView(new ArrayBuffer(32));
  p.setBigUint64(0, 0xffff_9000n, true);
  p.setUint8(24, 3);
  p.setUint8(25, 1);
  const m = decodeIotlbMsg(p);
  assertEquals([m.iova, m.perm, m.type], [0xffff_9000n, 3, 1]);
  p.setUint8(25, 9);
  assertThrows(() => decodeIotlbMsg(p), VhostUserError, "BAD_REPLY");
  p.setUint8(25, 1);
  p.setUint8(24, 4);
  assertThrows(() => decodeIotlbMsg(p), VhostUserError, "BAD_REPLY");
});

Deno.test("names: features and protocol features print by spec name", () => {
  assertEquals(featureBitNames((1n << 32n) | (1n << 34n) | (1n << 5n), { 5: "NET_F_MAC" }), [
    "NET_F_MAC",
    "VERSION_1",
    "RING_PACKED",
  ]);
  assertEquals(protocolFeatureNames(0x10029n), ["MQ", "REPLY_ACK", "BACKEND_REQ", "STATUS"]);
});

Deno.test("outcomeOf: back-end failures become typed outcomes, our bugs are rethrown", () => {
  assertEquals(outcomeOf(() => 7), { kind: "ok", value: 7 });
  const t = outcomeOf(() => {
    throw new VhostUserError("TIMEOUT", "silent", "GET_FEATURES");
  });
  assertEquals([t.kind, (t as { request?: string }).request], ["timeout", "GET_FEATURES"]);
  assertEquals(
    outcomeOf(() => {
      throw new VhostUserError("DISCONNECTED", "gone");
    }).kind,
    "disconnected",
  );
  assertThrows(() =>
    outcomeOf(() => {
      throw new TypeError("ours");
    }), TypeError);
  assertThrows(() =>
    outcomeOf(() => {
      throw new VhostUserError("BAD_ARGUMENT", "ours");
    }), VhostUserError);
});
