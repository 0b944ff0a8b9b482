/**
 * vhost-user protocol constants: front-end request codes, back-end request codes, header flags,
 * protocol feature bits and IOTLB message types, named as QEMU `docs/interop/vhost-user.rst`
 * names them (without the `VHOST_USER_` prefix), plus names for printing feature sets.
 *
 * @module
 */

/** Front-end message types (vhost-user.rst "Front-end message types", `:id:`). */
export const VHOST_USER_REQUEST = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

/** Name of a front-end request, e.g. `"GET_FEATURES"`. */
export type VhostUserRequestName = keyof typeof VHOST_USER_REQUEST;

/** Back-end message types sent on the SET_BACKEND_REQ_FD channel (vhost-user.rst). */
export const VHOST_USER_BACKEND_REQUEST = {
  IOTLB_MSG: 1,
  CONFIG_CHANGE_MSG: 2,
  VRING_HOST_NOTIFIER_MSG: 3,
} as const;

/** Header flags: version (bits 0-1, must be 1). */
export const VHOST_USER_VERSION = 0x1;
/** Header flags: `VHOST_USER_VERSION_MASK`. */
export const VHOST_USER_VERSION_MASK = 0x3;
/** Header flags bit 2: this message is a reply. */
export const VHOST_USER_REPLY_MASK = 0x4;
/** Header flags bit 3: the sender wants a REPLY_ACK (vhost-user.rst "REPLY_ACK"). */
export const VHOST_USER_NEED_REPLY_MASK = 0x8;
/** Bytes of the message header (request, flags, size: three u32). */
export const VHOST_USER_HDR_SIZE = 12;
/** Largest payload this front-end sends or accepts (QEMU's VhostUserMsg union is smaller). */
export const VHOST_USER_MAX_PAYLOAD = 4096 - VHOST_USER_HDR_SIZE;
/** Most memory regions in one SET_MEM_TABLE (`VHOST_MEMORY_BASELINE_NREGIONS`). */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;
/** SET_VRING_KICK / CALL / ERR payload bit 8: no fd attached (polling). */
export const VHOST_USER_VRING_NOFD_MASK = 0x100;
/** Virtio feature bit 30: the back-end speaks protocol features (`VHOST_USER_F_PROTOCOL_FEATURES`). */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;

/** Protocol feature bits (vhost-user.rst "Protocol features"), by name. */
export const VHOST_USER_PROTOCOL_F = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  NET_MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  XEN_MMAP: 17,
  SHARED_OBJECT: 18,
  DEVICE_STATE: 19,
} as const;

/** Name of a protocol feature. */
export type VhostUserProtocolFeature = keyof typeof VHOST_USER_PROTOCOL_F;

/** `struct vhost_iotlb_msg` type: the back-end misses a translation. */
export const VHOST_IOTLB_MISS = 1;
/** `struct vhost_iotlb_msg` type: the front-end adds a translation. */
export const VHOST_IOTLB_UPDATE = 2;
/** `struct vhost_iotlb_msg` type: the front-end removes translations. */
export const VHOST_IOTLB_INVALIDATE = 3;
/** `struct vhost_iotlb_msg` type: access failed. */
export const VHOST_IOTLB_ACCESS_FAIL = 4;
/** IOTLB permission: none. */
export const VHOST_ACCESS_NONE = 0;
/** IOTLB permission: the device may read. */
export const VHOST_ACCESS_RO = 1;
/** IOTLB permission: the device may write. */
export const VHOST_ACCESS_WO = 2;
/** IOTLB permission: both. */
export const VHOST_ACCESS_RW = 3;
/** SET_CONFIG flags: a writable field (0). */
export const VHOST_SET_CONFIG_TYPE_FRONTEND = 0;
/** Bytes of a `struct vhost_iotlb_msg` on the wire (u64 iova, size, uaddr; u8 perm, type; pad). */
export const VHOST_IOTLB_MSG_SIZE = 32;

const REQUEST_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(VHOST_USER_REQUEST).map(([k, v]) => [v, k]),
);

/** Name of a front-end request code (`"REQ_<n>"` for unknown codes). */
export function requestName(request: number): string {
  return REQUEST_NAMES[request] ?? `REQ_${request}`;
}

const PROTOCOL_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(VHOST_USER_PROTOCOL_F).map(([k, v]) => [v, k]),
);

/** Transport and vhost feature bits by number (virtio 1.2 §6 "Reserved Feature Bits"). */
export const TRANSPORT_FEATURE_NAMES: Readonly<Record<number, string>> = {
  24: "NOTIFY_ON_EMPTY",
  26: "VHOST_F_LOG_ALL",
  27: "ANY_LAYOUT",
  28: "RING_INDIRECT_DESC",
  29: "RING_EVENT_IDX",
  30: "VHOST_USER_F_PROTOCOL_FEATURES",
  32: "VERSION_1",
  33: "ACCESS_PLATFORM",
  34: "RING_PACKED",
  35: "IN_ORDER",
  36: "ORDER_PLATFORM",
  37: "SR_IOV",
  38: "NOTIFICATION_DATA",
  39: "NOTIF_CONFIG_DATA",
  40: "RING_RESET",
};

/** virtio-net device feature bits (virtio 1.2 §5.1.3) used by the probe. */
export const NET_FEATURE_NAMES: Readonly<Record<number, string>> = {
  0: "NET_F_CSUM",
  1: "NET_F_GUEST_CSUM",
  2: "NET_F_CTRL_GUEST_OFFLOADS",
  3: "NET_F_MTU",
  5: "NET_F_MAC",
  7: "NET_F_GUEST_TSO4",
  8: "NET_F_GUEST_TSO6",
  9: "NET_F_GUEST_ECN",
  10: "NET_F_GUEST_UFO",
  11: "NET_F_HOST_TSO4",
  12: "NET_F_HOST_TSO6",
  13: "NET_F_HOST_ECN",
  14: "NET_F_HOST_UFO",
  15: "NET_F_MRG_RXBUF",
  16: "NET_F_STATUS",
  17: "NET_F_CTRL_VQ",
  18: "NET_F_CTRL_RX",
  19: "NET_F_CTRL_VLAN",
  21: "NET_F_GUEST_ANNOUNCE",
  22: "NET_F_MQ",
  23: "NET_F_CTRL_MAC_ADDR",
};

/** virtio-blk device feature bits (virtio 1.2 §5.2.3) used by the probe. */
export const BLK_FEATURE_NAMES: Readonly<Record<number, string>> = {
  1: "BLK_F_SIZE_MAX",
  2: "BLK_F_SEG_MAX",
  4: "BLK_F_GEOMETRY",
  5: "BLK_F_RO",
  6: "BLK_F_BLK_SIZE",
  9: "BLK_F_FLUSH",
  10: "BLK_F_TOPOLOGY",
  11: "BLK_F_CONFIG_WCE",
  12: "BLK_F_MQ",
  13: "BLK_F_DISCARD",
  14: "BLK_F_WRITE_ZEROES",
  15: "BLK_F_LIFETIME",
  16: "BLK_F_SECURE_ERASE",
};

/**
 * Names of the set bits of a virtio feature word, low bit first; device-specific bits come from
 * `deviceNames`, unknown bits print as `bit<n>`.
 */
export function featureBitNames(
  features: bigint,
  deviceNames: Readonly<Record<number, string>> = {},
): string[] {
  const out: string[] = [];
  for (let i = 0; i < 64; i++) {
    if ((features >> BigInt(i)) & 1n) {
      out.push(TRANSPORT_FEATURE_NAMES[i] ?? deviceNames[i] ?? `bit${i}`);
    }
  }
  return out;
}

/** Names of the set bits of a protocol feature word (`bit<n>` when unknown). */
export function protocolFeatureNames(features: bigint): string[] {
  const out: string[] = [];
  for (let i = 0; i < 64; i++) {
    if ((features >> BigInt(i)) & 1n) out.push(PROTOCOL_NAMES[i] ?? `bit${i}`);
  }
  return out;
}

/** The bit of protocol feature `name` as a mask. */
export function protocolBit(name: VhostUserProtocolFeature): bigint {
  return 1n << BigInt(VHOST_USER_PROTOCOL_F[name]);
}
