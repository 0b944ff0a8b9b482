/**
 * The vhost-user message codec (QEMU `docs/interop/vhost-user.rst` "Message Specification"):
 * pure functions that lay front-end messages out in a byte buffer and read back-end replies and
 * back-end requests out of one. No FFI here: the byte layouts are tested as known answers.
 *
 * A message is a 12-byte header (u32 request; u32 flags: bits 0-1 version = 1, bit 2 reply,
 * bit 3 need_reply; u32 size) and `size` payload bytes, little-endian on x86-64 ("machine native
 * byte order"). File descriptors travel beside it as SCM_RIGHTS.
 *
 * Everything the back-end sends is checked with zod at this edge ({@link decodeHeader} and the
 * `decode*` functions) and refused with `BAD_REPLY` when malformed.
 *
 * @module
 */

import { z } from "zod";
import { VhostUserError } from "./errors.ts";
import {
  requestName,
  VHOST_IOTLB_MSG_SIZE,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_REQUEST,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
} from "./protocol.ts";

const R = VHOST_USER_REQUEST;

/** A decoded message header. */
export interface VhostUserHeader {
  /** Request code. */
  readonly request: number;
  /** Flags (version, reply, need_reply). */
  readonly flags: number;
  /** Payload bytes that follow. */
  readonly size: number;
}

/** One memory region of SET_MEM_TABLE (vhost-user.rst "Memory regions description"). */
export interface VhostUserMemoryRegion {
  /** Guest address of the region (GPA). */
  readonly guestPhysAddr: bigint;
  /** Size in bytes. */
  readonly memorySize: bigint;
  /** The front-end's user (virtual) address of the region. */
  readonly userspaceAddr: bigint;
  /** Offset of the region in its fd. */
  readonly mmapOffset: bigint;
}

/** `struct vhost_vring_addr` (vhost-user.rst "A vring address description"). */
export interface VhostVringAddr {
  /** Vring index. */
  readonly index: number;
  /** Flags (bit 0 `VHOST_VRING_F_LOG`). */
  readonly flags: number;
  /** Descriptor area: user address, or IOVA with ACCESS_PLATFORM. */
  readonly desc: bigint;
  /** Device area (used ring). */
  readonly used: bigint;
  /** Driver area (available ring). */
  readonly avail: bigint;
  /** Log address (0 without logging). */
  readonly log: bigint;
}

/** `struct vhost_iotlb_msg` (vhost-user.rst "An IOTLB message"). */
export interface VhostIotlbMsg {
  /** I/O virtual address. */
  readonly iova: bigint;
  /** Size in bytes. */
  readonly size: bigint;
  /** Front-end user address it maps to (UPDATE). */
  readonly uaddr: bigint;
  /** Permission: 0 none, 1 RO, 2 WO, 3 RW. */
  readonly perm: number;
  /** Type: 1 MISS, 2 UPDATE, 3 INVALIDATE, 4 ACCESS_FAIL. */
  readonly type: number;
}

/** A vhost-user config access (vhost-user.rst "Virtio device config space"). */
export interface VhostUserConfig {
  /** Offset in the device configuration space. */
  readonly offset: number;
  /** Flags (0: writable fields, 1: live migration). */
  readonly flags: number;
  /** The bytes. */
  readonly data: Uint8Array;
}

function header(v: DataView, request: number, size: number, needReply: boolean): number {
  if (size > VHOST_USER_MAX_PAYLOAD || size > v.byteLength - VHOST_USER_HDR_SIZE) {
    throw new VhostUserError(
      "BAD_ARGUMENT",
      `${requestName(request)} payload of ${size} bytes does not fit`,
      requestName(request),
    );
  }
  v.setUint32(0, request, true);
  v.setUint32(4, VHOST_USER_VERSION | (needReply ? VHOST_USER_NEED_REPLY_MASK : 0), true);
  v.setUint32(8, size, true);
  return VHOST_USER_HDR_SIZE + size;
}

/**
 * A message without payload (GET_FEATURES, SET_OWNER, SET_BACKEND_REQ_FD, GET_STATUS, ...).
 * @returns bytes written (12).
 */
export function encodeEmpty(v: DataView, request: number, needReply = false): number {
  return header(v, request, 0, needReply);
}

/**
 * A message whose payload is one u64 (SET_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_KICK/CALL,
 * SET_STATUS, ...). @returns bytes written (20).
 */
export function encodeU64(v: DataView, request: number, value: bigint, needReply = false): number {
  const n = header(v, request, 8, needReply);
  v.setBigUint64(12, BigInt.asUintN(64, value), true);
  return n;
}

/**
 * A vring state description `{ u32 index; u32 num; }` (SET_VRING_NUM, SET_VRING_BASE,
 * GET_VRING_BASE, SET_VRING_ENABLE). @returns bytes written (20).
 */
export function encodeVringState(
  v: DataView,
  request: number,
  index: number,
  num: number,
  needReply = false,
): number {
  const n = header(v, request, 8, needReply);
  v.setUint32(12, index >>> 0, true);
  v.setUint32(16, num >>> 0, true);
  return n;
}

/** SET_VRING_ADDR with a `struct vhost_vring_addr` (40 bytes). @returns bytes written (52). */
export function encodeVringAddr(v: DataView, a: VhostVringAddr, needReply = false): number {
  const n = header(v, R.SET_VRING_ADDR, 40, needReply);
  v.setUint32(12, a.index >>> 0, true);
  v.setUint32(16, a.flags >>> 0, true);
  v.setBigUint64(20, BigInt.asUintN(64, a.desc), true);
  v.setBigUint64(28, BigInt.asUintN(64, a.used), true);
  v.setBigUint64(36, BigInt.asUintN(64, a.avail), true);
  v.setBigUint64(44, BigInt.asUintN(64, a.log), true);
  return n;
}

/**
 * SET_MEM_TABLE: u32 nregions; u32 padding; then per region u64 guest address, size, user
 * address, mmap offset (32 bytes). The fds go beside it, one per region, in order.
 * @returns bytes written (12 + 8 + 32 n).
 * @throws VhostUserError `BAD_ARGUMENT` for more than 8 regions.
 */
export function encodeMemTable(
  v: DataView,
  regions: readonly VhostUserMemoryRegion[],
  needReply = false,
): number {
  if (regions.length > 8) {
    throw new VhostUserError("BAD_ARGUMENT", `${regions.length} regions (at most 8)`);
  }
  const n = header(v, R.SET_MEM_TABLE, 8 + 32 * regions.length, needReply);
  v.setUint32(12, regions.length, true);
  v.setUint32(16, 0, true);
  regions.forEach((r, i) => {
    const o = 20 + 32 * i;
    v.setBigUint64(o, BigInt.asUintN(64, r.guestPhysAddr), true);
    v.setBigUint64(o + 8, BigInt.asUintN(64, r.memorySize), true);
    v.setBigUint64(o + 16, BigInt.asUintN(64, r.userspaceAddr), true);
    v.setBigUint64(o + 24, BigInt.asUintN(64, r.mmapOffset), true);
  });
  return n;
}

/** IOTLB_MSG (22) with a `struct vhost_iotlb_msg` (32 bytes). @returns bytes written (44). */
export function encodeIotlbMsg(v: DataView, m: VhostIotlbMsg, needReply = false): number {
  const n = header(v, R.IOTLB_MSG, VHOST_IOTLB_MSG_SIZE, needReply);
  writeIotlb(v, 12, m);
  return n;
}

function writeIotlb(v: DataView, o: number, m: VhostIotlbMsg): void {
  v.setBigUint64(o, BigInt.asUintN(64, m.iova), true);
  v.setBigUint64(o + 8, BigInt.asUintN(64, m.size), true);
  v.setBigUint64(o + 16, BigInt.asUintN(64, m.uaddr), true);
  v.setUint8(o + 24, m.perm);
  v.setUint8(o + 25, m.type);
  for (let i = 26; i < 32; i++) v.setUint8(o + i, 0);
}

/**
 * GET_CONFIG / SET_CONFIG: u32 offset; u32 size; u32 flags; `size` bytes. GET_CONFIG sends
 * `size` zero bytes that the back-end fills. @returns bytes written.
 */
export function encodeConfig(
  v: DataView,
  request: number,
  offset: number,
  size: number,
  flags: number,
  data: Uint8Array | null,
  needReply = false,
): number {
  const n = header(v, request, 12 + size, needReply);
  v.setUint32(12, offset >>> 0, true);
  v.setUint32(16, size >>> 0, true);
  v.setUint32(20, flags >>> 0, true);
  for (let i = 0; i < size; i++) v.setUint8(24 + i, data === null ? 0 : data[i] ?? 0);
  return n;
}

/**
 * A reply from the front-end to a back-end request that asked for one (need_reply):
 * header with the reply flag and a u64 result. @returns bytes written (20).
 */
export function encodeBackendReply(v: DataView, request: number, result: bigint): number {
  v.setUint32(0, request, true);
  v.setUint32(4, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, true);
  v.setUint32(8, 8, true);
  v.setBigUint64(12, BigInt.asUintN(64, result), true);
  return 20;
}

const HEADER_SCHEMA = z.object({
  request: z.number().int().min(0),
  flags: z.number().int().refine((f) => (f & VHOST_USER_VERSION_MASK) === VHOST_USER_VERSION, {
    message: "version is not 1",
  }),
  size: z.number().int().min(0).max(VHOST_USER_MAX_PAYLOAD),
});

function badReply(message: string, request?: number): never {
  throw new VhostUserError(
    "BAD_REPLY",
    message,
    request === undefined ? undefined : requestName(request),
  );
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string, request?: number): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    badReply(`${what}: ${issue.path.join(".") || "value"}: ${issue.message}`, request);
  }
  return r.data;
}

/**
 * Reads and validates a 12-byte header (version 1, size within limits).
 * @throws VhostUserError `BAD_REPLY`.
 */
export function decodeHeader(v: DataView): VhostUserHeader {
  return check(HEADER_SCHEMA, {
    request: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    size: v.getUint32(8, true),
  }, "message header");
}

/**
 * Checks that `h` is the reply to `request`: same request code, reply flag set, and (when
 * given) exactly `size` payload bytes.
 * @throws VhostUserError `BAD_REPLY`.
 */
export function checkReplyHeader(h: VhostUserHeader, request: number, size?: number): void {
  if (h.request !== request) {
    badReply(`reply carries request ${requestName(h.request)}`, request);
  }
  if ((h.flags & VHOST_USER_REPLY_MASK) === 0) badReply(`reply flag missing`, request);
  if (size !== undefined && h.size !== size) {
    badReply(`reply payload is ${h.size} bytes, expected ${size}`, request);
  }
}

/** The u64 payload of a reply (GET_FEATURES, REPLY_ACK, ...), at payload offset 0. */
export function decodeU64(payload: DataView): bigint {
  return payload.getBigUint64(0, true);
}

const VRING_STATE_SCHEMA = z.object({ index: z.number().int(), num: z.number().int() });

/**
 * A vring state reply (GET_VRING_BASE): `{ index, num }`; `index` must be the one asked.
 * @throws VhostUserError `BAD_REPLY`.
 */
export function decodeVringState(
  payload: DataView,
  expectIndex: number,
): { index: number; num: number } {
  const s = check(
    VRING_STATE_SCHEMA,
    {
      index: payload.getUint32(0, true),
      num: payload.getUint32(4, true),
    },
    "vring state",
    R.GET_VRING_BASE,
  );
  if (s.index !== expectIndex) {
    badReply(`vring state for index ${s.index}, asked ${expectIndex}`, R.GET_VRING_BASE);
  }
  return s;
}

/**
 * A GET_CONFIG reply: offset, size and flags echoed, `size` bytes. A zero-size payload is the
 * back-end's error indication (vhost-user.rst GET_CONFIG).
 * @throws VhostUserError `BAD_REPLY` (wrong size) or `NACK` (zero-length payload).
 */
export function decodeConfig(payload: DataView, expectSize: number): VhostUserConfig {
  if (payload.byteLength === 0) {
    throw new VhostUserError("NACK", "GET_CONFIG answered with an empty payload", "GET_CONFIG");
  }
  if (payload.byteLength < 12) badReply(`config payload of ${payload.byteLength} bytes`);
  const size = payload.getUint32(4, true);
  if (size !== expectSize || payload.byteLength !== 12 + size) {
    badReply(`config size ${size} (payload ${payload.byteLength}), asked ${expectSize}`);
  }
  return {
    offset: payload.getUint32(0, true),
    flags: payload.getUint32(8, true),
    data: new Uint8Array(payload.buffer, payload.byteOffset + 12, size).slice(),
  };
}

const IOTLB_SCHEMA = z.object({
  iova: z.bigint(),
  size: z.bigint(),
  uaddr: z.bigint(),
  perm: z.number().int().min(0).max(3),
  type: z.number().int().min(1).max(4),
});

/**
 * A `struct vhost_iotlb_msg` from a back-end request (IOTLB_MSG, usually a MISS).
 * @throws VhostUserError `BAD_REPLY` when short or with an unknown type or permission.
 */
export function decodeIotlbMsg(payload: DataView): VhostIotlbMsg {
  if (payload.byteLength < 26) badReply(`IOTLB message of ${payload.byteLength} bytes`);
  return check(IOTLB_SCHEMA, {
    iova: payload.getBigUint64(0, true),
    size: payload.getBigUint64(8, true),
    uaddr: payload.getBigUint64(16, true),
    perm: payload.getUint8(24),
    type: payload.getUint8(25),
  }, "IOTLB message");
}
