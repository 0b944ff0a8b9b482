/**
 * The vhost-user front-end: one connection to a back-end, every front-end message this project
 * uses as a method, replies awaited with a deadline, REPLY_ACK honoured once negotiated, and the
 * back-end request channel (SET_BACKEND_REQ_FD) serviced while waiting for used buffers.
 *
 * Methods send exactly what they are given: hostile values (ring addresses outside the memory
 * table, odd sizes) are the caller's to choose. A back-end that disconnects, stops answering or
 * answers garbage throws a {@link VhostUserError} (`DISCONNECTED`, `TIMEOUT`, `BAD_REPLY`,
 * `NACK`); {@link outcomeOf} turns that into a typed outcome.
 *
 * @module
 */

import {
  checkReplyHeader,
  decodeConfig,
  decodeHeader,
  decodeIotlbMsg,
  decodeU64,
  decodeVringState,
  encodeBackendReply,
  encodeConfig,
  encodeEmpty,
  encodeIotlbMsg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  type VhostIotlbMsg,
  type VhostUserConfig,
  type VhostUserMemoryRegion,
  type VhostVringAddr,
} from "./codec.ts";
import { VhostUserError } from "./errors.ts";
import { closeFd, POLLERR, POLLHUP, pollIn } from "./libc.ts";
import {
  protocolBit,
  requestName,
  VHOST_IOTLB_INVALIDATE,
  VHOST_IOTLB_MISS,
  VHOST_IOTLB_UPDATE,
  VHOST_USER_BACKEND_REQUEST,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REQUEST,
  VHOST_USER_VRING_NOFD_MASK,
  type VhostUserProtocolFeature,
} from "./protocol.ts";
import { UnixSocket } from "./socket.ts";

const R = VHOST_USER_REQUEST;

/** Options of {@link VhostUserFrontend.connect}. */
export interface VhostUserFrontendOptions {
  /** Deadline of every reply and REPLY_ACK, in ms (default 3000). */
  replyTimeoutMs?: number;
  /** How long to retry a refused connect (socket bound, not yet listening), in ms (default 0). */
  connectRetryMs?: number;
  /** Called with one line per message sent or received (debugging). */
  trace?: (line: string) => void;
}

/** Message counters of a front-end. */
export interface VhostUserStats {
  /** Messages sent, by request name. */
  readonly sent: Record<string, number>;
  /** Replies and acknowledgements received, by request name. */
  readonly replies: Record<string, number>;
  /** IOTLB_MSG UPDATE messages sent. */
  iotlbUpdates: number;
  /** IOTLB_MSG INVALIDATE messages sent. */
  iotlbInvalidates: number;
  /** IOTLB MISS requests received from the back-end. */
  iotlbMisses: number;
  /** Back-end requests of other kinds received. */
  backendRequests: number;
}

/** What a wait on a call eventfd saw. */
export type CallWaitResult = "call" | "timeout" | "backend-request";

/**
 * Handler of back-end IOTLB MISS requests: sends UPDATEs (or nothing) through the front-end.
 * Returns the u64 result for a back-end request that asked for a reply (0 = success).
 */
export type IotlbMissHandler = (miss: VhostIotlbMsg) => bigint;

/** One front-end connection. */
export class VhostUserFrontend {
  /** The connection. */
  readonly socket: UnixSocket;
  /** Reply deadline in ms. */
  replyTimeoutMs: number;
  /** Trace sink, or `null`. */
  trace: ((line: string) => void) | null;
  /** Message counters. */
  readonly stats: VhostUserStats = {
    sent: {},
    replies: {},
    iotlbUpdates: 0,
    iotlbInvalidates: 0,
    iotlbMisses: 0,
    backendRequests: 0,
  };
  /** Protocol features in force (after {@link VhostUserFrontend.setProtocolFeatures}). */
  protocolFeatures = 0n;
  /** Our end of the back-end request channel, once opened. */
  backendChannel: UnixSocket | null = null;
  /** Serves IOTLB misses from the back-end; `null` answers nothing. */
  onIotlbMiss: IotlbMissHandler | null = null;
  readonly #revents = [0, 0, 0];

  private constructor(socket: UnixSocket, o: VhostUserFrontendOptions) {
    this.socket = socket;
    this.replyTimeoutMs = o.replyTimeoutMs ?? 3000;
    this.trace = o.trace ?? null;
  }

  /**
   * Connects to a back-end listening on `path`.
   * @throws VhostUserError `CONNECT_FAILED` when nothing accepts there; `FFI_UNAVAILABLE`.
   */
  static connect(path: string, options: VhostUserFrontendOptions = {}): VhostUserFrontend {
    return new VhostUserFrontend(UnixSocket.connect(path, options.connectRetryMs ?? 0), options);
  }

  /** True when REPLY_ACK is in force. */
  get replyAck(): boolean {
    return (this.protocolFeatures & protocolBit("REPLY_ACK")) !== 0n;
  }

  /** True when protocol feature `name` is in force. */
  hasProtocol(name: VhostUserProtocolFeature): boolean {
    return (this.protocolFeatures & protocolBit(name)) !== 0n;
  }

  // ---- transport -------------------------------------------------------------------------

  #view(): DataView {
    if (this.socket.closed) {
      throw new VhostUserError("DISCONNECTED", "the connection is closed");
    }
    return this.socket.buf.view;
  }

  #send(request: number, len: number, fds: readonly number[]): void {
    const name = requestName(request);
    this.trace?.(`-> ${name} size=${len - VHOST_USER_HDR_SIZE} fds=[${fds.join(",")}]`);
    this.socket.send(len, fds, name);
    this.stats.sent[name] = (this.stats.sent[name] ?? 0) + 1;
  }

  /**
   * Receives the reply to `request` (with `size` payload bytes when given) and returns a view
   * of its payload, valid until the next message.
   * @throws VhostUserError `TIMEOUT`, `DISCONNECTED`, `BAD_REPLY`.
   */
  #reply(request: number, size?: number): DataView {
    const name = requestName(request);
    const deadline = Date.now() + this.replyTimeoutMs;
    this.socket.recvExact(VHOST_USER_HDR_SIZE, 0, deadline, name);
    let h;
    try {
      h = decodeHeader(this.socket.buf.view);
      checkReplyHeader(h, request, size);
    } catch (e) {
      // A reply we cannot frame leaves the stream unusable: close it (vhost-user.rst: the
      // front-end closes the connection on a wrong reply).
      this.close();
      if (e instanceof VhostUserError) {
        throw new VhostUserError("BAD_REPLY", e.message.replace(/^BAD_REPLY: /, ""), name);
      }
      throw e;
    }
    if (h.size > 0) this.socket.recvExact(h.size, VHOST_USER_HDR_SIZE, deadline, name);
    this.stats.replies[name] = (this.stats.replies[name] ?? 0) + 1;
    this.trace?.(`<- ${name} flags=0x${h.flags.toString(16)} size=${h.size}`);
    const v = this.socket.buf.view;
    return new DataView(v.buffer, v.byteOffset + VHOST_USER_HDR_SIZE, h.size);
  }

  /** Awaits the REPLY_ACK of `request` when one was asked for. @throws VhostUserError `NACK`. */
  #ack(request: number, asked: boolean): void {
    if (!asked) return;
    const r = decodeU64(this.#reply(request, 8));
    if (r !== 0n) {
      throw new VhostUserError(
        "NACK",
        `${requestName(request)} failed with ${r}`,
        requestName(request),
      );
    }
  }

  /**
   * Sends a message the caller laid out in bytes (hostile framing for fuzzing), with fds.
   * Awaits nothing.
   * @throws VhostUserError `DISCONNECTED`, `BAD_ARGUMENT` (over 4096 bytes).
   */
  sendRaw(message: Uint8Array, fds: readonly number[] = []): void {
    const v = this.#view();
    if (message.length > this.socket.buf.bytes.length) {
      throw new VhostUserError("BAD_ARGUMENT", `raw message of ${message.length} bytes`);
    }
    this.socket.buf.bytes.set(message);
    this.#send(v.getUint32(0, true), message.length, fds);
  }

  // ---- negotiation -----------------------------------------------------------------------

  /** GET_FEATURES: the back-end's virtio feature bits. */
  getFeatures(): bigint {
    this.#send(R.GET_FEATURES, encodeEmpty(this.#view(), R.GET_FEATURES), []);
    return decodeU64(this.#reply(R.GET_FEATURES, 8));
  }

  /** SET_FEATURES: the driver's accepted feature bits (acknowledged with REPLY_ACK). */
  setFeatures(features: bigint): void {
    const ack = this.replyAck;
    this.#send(R.SET_FEATURES, encodeU64(this.#view(), R.SET_FEATURES, features, ack), []);
    this.#ack(R.SET_FEATURES, ack);
  }

  /** GET_PROTOCOL_FEATURES (needs VHOST_USER_F_PROTOCOL_FEATURES offered). */
  getProtocolFeatures(): bigint {
    const v = this.#view();
    this.#send(R.GET_PROTOCOL_FEATURES, encodeEmpty(v, R.GET_PROTOCOL_FEATURES), []);
    return decodeU64(this.#reply(R.GET_PROTOCOL_FEATURES, 8));
  }

  /**
   * SET_PROTOCOL_FEATURES. Sent without need_reply: REPLY_ACK is not in force until the
   * back-end has processed this very message (VHOST_USER.md).
   */
  setProtocolFeatures(features: bigint): void {
    const v = this.#view();
    this.#send(R.SET_PROTOCOL_FEATURES, encodeU64(v, R.SET_PROTOCOL_FEATURES, features), []);
    this.protocolFeatures = features;
  }

  /** SET_OWNER: starts the session. */
  setOwner(): void {
    this.#simple(R.SET_OWNER);
  }

  /** RESET_DEVICE (protocol RESET_DEVICE): disables all rings and resets device state. */
  resetDevice(): void {
    this.#need("RESET_DEVICE", "RESET_DEVICE");
    this.#simple(R.RESET_DEVICE);
  }

  #simple(request: number): void {
    const ack = this.replyAck;
    this.#send(request, encodeEmpty(this.#view(), request, ack), []);
    this.#ack(request, ack);
  }

  #need(feature: VhostUserProtocolFeature, request: string): void {
    if (!this.hasProtocol(feature)) {
      throw new VhostUserError(
        "NOT_NEGOTIATED",
        `${request} needs protocol feature ${feature}`,
        request,
      );
    }
  }

  /** GET_QUEUE_NUM (protocol MQ): the most queues the back-end supports. */
  getQueueNum(): bigint {
    this.#need("MQ", "GET_QUEUE_NUM");
    this.#send(R.GET_QUEUE_NUM, encodeEmpty(this.#view(), R.GET_QUEUE_NUM), []);
    return decodeU64(this.#reply(R.GET_QUEUE_NUM, 8));
  }

  /** GET_MAX_MEM_SLOTS (protocol CONFIGURE_MEM_SLOTS). */
  getMaxMemSlots(): bigint {
    this.#need("CONFIGURE_MEM_SLOTS", "GET_MAX_MEM_SLOTS");
    this.#send(R.GET_MAX_MEM_SLOTS, encodeEmpty(this.#view(), R.GET_MAX_MEM_SLOTS), []);
    return decodeU64(this.#reply(R.GET_MAX_MEM_SLOTS, 8));
  }

  /** SET_MEM_TABLE with one fd per region, in order. */
  setMemTable(regions: readonly VhostUserMemoryRegion[], fds: readonly number[]): void {
    const ack = this.replyAck;
    this.#send(R.SET_MEM_TABLE, encodeMemTable(this.#view(), regions, ack), fds);
    this.#ack(R.SET_MEM_TABLE, ack);
  }

  // ---- vrings ----------------------------------------------------------------------------

  #state(request: number, index: number, num: number): void {
    const ack = this.replyAck;
    this.#send(request, encodeVringState(this.#view(), request, index, num, ack), []);
    this.#ack(request, ack);
  }

  /** SET_VRING_NUM: Queue Size of vring `index`. */
  setVringNum(index: number, num: number): void {
    this.#state(R.SET_VRING_NUM, index, num);
  }

  /**
   * SET_VRING_BASE: where the back-end starts. Split: last_avail_idx; packed: last_avail_idx
   * | wrap counter << 15, so a fresh packed ring is 0x8000.
   */
  setVringBase(index: number, num: number): void {
    this.#state(R.SET_VRING_BASE, index, num);
  }

  /** SET_VRING_ENABLE (needs VHOST_USER_F_PROTOCOL_FEATURES negotiated). */
  setVringEnable(index: number, enable: boolean): void {
    this.#state(R.SET_VRING_ENABLE, index, enable ? 1 : 0);
  }

  /**
   * SET_VRING_ADDR: user addresses of the three areas (IOVAs with ACCESS_PLATFORM).
   */
  setVringAddr(addr: VhostVringAddr): void {
    const ack = this.replyAck;
    this.#send(R.SET_VRING_ADDR, encodeVringAddr(this.#view(), addr, ack), []);
    this.#ack(R.SET_VRING_ADDR, ack);
  }

  #vringFd(request: number, index: number, fd: number | null): void {
    const ack = this.replyAck;
    const value = BigInt(index & 0xff) | (fd === null ? BigInt(VHOST_USER_VRING_NOFD_MASK) : 0n);
    this.#send(request, encodeU64(this.#view(), request, value, ack), fd === null ? [] : [fd]);
    this.#ack(request, ack);
  }

  /** SET_VRING_KICK with an eventfd (`null`: no fd, the back-end polls). */
  setVringKick(index: number, fd: number | null): void {
    this.#vringFd(R.SET_VRING_KICK, index, fd);
  }

  /** SET_VRING_CALL with an eventfd (`null`: no fd). */
  setVringCall(index: number, fd: number | null): void {
    this.#vringFd(R.SET_VRING_CALL, index, fd);
  }

  /** SET_VRING_ERR with an eventfd (`null`: no fd). */
  setVringErr(index: number, fd: number | null): void {
    this.#vringFd(R.SET_VRING_ERR, index, fd);
  }

  /**
   * GET_VRING_BASE: stops vring `index` and returns its position (split: last_avail_idx;
   * packed: last_avail_idx | wrap << 15).
   * @throws VhostUserError `TIMEOUT`, `DISCONNECTED`, `BAD_REPLY`.
   */
  getVringBase(index: number): number {
    this.#send(R.GET_VRING_BASE, encodeVringState(this.#view(), R.GET_VRING_BASE, index, 0), []);
    return decodeVringState(this.#reply(R.GET_VRING_BASE, 8), index).num;
  }

  // ---- config and status -----------------------------------------------------------------

  /** GET_CONFIG (protocol CONFIG): `size` bytes of device config space from `offset`. */
  getConfig(offset: number, size: number): VhostUserConfig {
    this.#need("CONFIG", "GET_CONFIG");
    this.#send(R.GET_CONFIG, encodeConfig(this.#view(), R.GET_CONFIG, offset, size, 0, null), []);
    return decodeConfig(this.#reply(R.GET_CONFIG), size);
  }

  /** SET_CONFIG (protocol CONFIG): writes `data` at `offset` (flags 0: writable fields). */
  setConfig(offset: number, data: Uint8Array, flags = 0): void {
    this.#need("CONFIG", "SET_CONFIG");
    const ack = this.replyAck;
    const v = this.#view();
    this.#send(
      R.SET_CONFIG,
      encodeConfig(v, R.SET_CONFIG, offset, data.length, flags, data, ack),
      [],
    );
    this.#ack(R.SET_CONFIG, ack);
  }

  /** GET_STATUS (protocol STATUS): the device status byte. */
  getStatus(): number {
    this.#need("STATUS", "GET_STATUS");
    this.#send(R.GET_STATUS, encodeEmpty(this.#view(), R.GET_STATUS), []);
    return Number(decodeU64(this.#reply(R.GET_STATUS, 8)) & 0xffn);
  }

  /** SET_STATUS (protocol STATUS): writes the device status byte. */
  setStatus(status: number): void {
    this.#need("STATUS", "SET_STATUS");
    const ack = this.replyAck;
    this.#send(R.SET_STATUS, encodeU64(this.#view(), R.SET_STATUS, BigInt(status), ack), []);
    this.#ack(R.SET_STATUS, ack);
  }

  // ---- back-end request channel and IOTLB ------------------------------------------------

  /**
   * SET_BACKEND_REQ_FD (protocol BACKEND_REQ): opens the channel the back-end sends requests
   * (IOTLB misses) on; we keep one end of a socketpair.
   */
  setBackendReqFd(): void {
    this.#need("BACKEND_REQ", "SET_BACKEND_REQ_FD");
    const [ours, theirs] = UnixSocket.pair();
    try {
      const ack = this.replyAck;
      this.#send(R.SET_BACKEND_REQ_FD, encodeEmpty(this.#view(), R.SET_BACKEND_REQ_FD, ack), [
        theirs,
      ]);
      this.#ack(R.SET_BACKEND_REQ_FD, ack);
    } catch (e) {
      ours.close();
      throw e;
    } finally {
      closeFd(theirs); // the back-end holds its own copy
    }
    this.backendChannel = ours;
  }

  /**
   * IOTLB_MSG UPDATE: `[iova, iova + size)` maps to user address `uaddr` with `perm`
   * (1 RO, 2 WO, 3 RW). Acknowledged (the back-end must answer, vhost-user.rst IOTLB_MSG).
   */
  iotlbUpdate(iova: bigint, size: bigint, uaddr: bigint, perm: number): void {
    this.#iotlb({ iova, size, uaddr, perm, type: VHOST_IOTLB_UPDATE });
    this.stats.iotlbUpdates++;
  }

  /** IOTLB_MSG INVALIDATE of `[iova, iova + size)`. */
  iotlbInvalidate(iova: bigint, size: bigint): void {
    this.#iotlb({ iova, size, uaddr: 0n, perm: 0, type: VHOST_IOTLB_INVALIDATE });
    this.stats.iotlbInvalidates++;
  }

  #iotlb(m: VhostIotlbMsg): void {
    const ack = this.replyAck;
    this.#send(R.IOTLB_MSG, encodeIotlbMsg(this.#view(), m, ack), []);
    this.#ack(R.IOTLB_MSG, ack);
  }

  /**
   * Reads and serves every back-end request already pending (IOTLB misses go to
   * {@link VhostUserFrontend.onIotlbMiss}); returns how many were served.
   * @throws VhostUserError `DISCONNECTED` when the channel closed, `BAD_REPLY` for garbage.
   */
  serviceBackend(): number {
    const ch = this.backendChannel;
    if (ch === null) return 0;
    let served = 0;
    while (!ch.closed && pollIn([ch.fd], 0, this.#revents) > 0) {
      if (this.#revents[0] & (POLLHUP | POLLERR) && ch.peerClosed()) {
        throw new VhostUserError("DISCONNECTED", "the back-end closed its request channel");
      }
      const deadline = Date.now() + this.replyTimeoutMs;
      ch.recvExact(VHOST_USER_HDR_SIZE, 0, deadline, "backend request");
      const h = decodeHeader(ch.buf.view);
      if (h.size > 0) ch.recvExact(h.size, VHOST_USER_HDR_SIZE, deadline, "backend request");
      const payload = new DataView(ch.buf.view.buffer, ch.buf.view.byteOffset + 12, h.size);
      let result = 0n;
      if (h.request === VHOST_USER_BACKEND_REQUEST.IOTLB_MSG) {
        const m = decodeIotlbMsg(payload);
        this.trace?.(`<= IOTLB ${m.type} iova=0x${m.iova.toString(16)} perm=${m.perm}`);
        if (m.type === VHOST_IOTLB_MISS) {
          this.stats.iotlbMisses++;
          // The handler sends on the main socket; the channel's buffer is not used by it.
          result = this.onIotlbMiss ? this.onIotlbMiss(m) : 1n;
        }
      } else {
        this.stats.backendRequests++;
        this.trace?.(`<= backend request ${h.request} size=${h.size}`);
      }
      if (h.flags & VHOST_USER_NEED_REPLY_MASK) {
        ch.send(encodeBackendReply(ch.buf.view, h.request, result), [], "backend reply");
      }
      served++;
    }
    return served;
  }

  /**
   * Blocks in poll() until the call eventfd `callFd` fires, a back-end request arrives (served
   * before returning), or `timeoutMs` passes. Reads the eventfd counter when it fired.
   * @throws VhostUserError `DISCONNECTED` when the back-end closed the connection meanwhile.
   */
  waitCall(callFd: number, timeoutMs: number): CallWaitResult {
    const ch = this.backendChannel;
    const fds = ch && !ch.closed ? [callFd, this.socket.fd, ch.fd] : [callFd, this.socket.fd];
    if (this.socket.closed) throw new VhostUserError("DISCONNECTED", "the connection is closed");
    const n = pollIn(fds, timeoutMs, this.#revents);
    if (n === 0) return "timeout";
    if (this.#revents[1] !== 0 && this.socket.peerClosed()) {
      throw new VhostUserError("DISCONNECTED", "the back-end closed the connection");
    }
    if (fds.length === 3 && this.#revents[2] !== 0) {
      const fired = this.#revents[0] !== 0;
      this.serviceBackend();
      if (!fired) return "backend-request";
    }
    return this.#revents[0] !== 0 ? "call" : "timeout";
  }

  /** Closes the connection and the back-end channel (idempotent). */
  close(): void {
    this.socket.close();
    this.backendChannel?.close();
  }
}

/** Options of {@link negotiate}. */
export interface NegotiateOptions {
  /** Virtio feature bits the driver wants (masked with the offer). */
  features: bigint;
  /** Bits that must be offered, else `NOT_NEGOTIATED` (default none). */
  require?: bigint;
  /** Protocol features the front-end wants (masked with the offer). */
  protocol: bigint;
  /** Open the back-end request channel when BACKEND_REQ is negotiated (default true). */
  backendChannel?: boolean;
}

/** What {@link negotiate} agreed. */
export interface Negotiated {
  /** The back-end's offer (GET_FEATURES). */
  readonly offeredFeatures: bigint;
  /** The driver's accepted features (SET_FEATURES). */
  readonly features: bigint;
  /** The back-end's protocol offer (0 without VHOST_USER_F_PROTOCOL_FEATURES). */
  readonly offeredProtocol: bigint;
  /** Protocol features in force. */
  readonly protocol: bigint;
}

/**
 * The handshake up to SET_FEATURES: GET_FEATURES, GET/SET_PROTOCOL_FEATURES, SET_OWNER,
 * SET_BACKEND_REQ_FD (when negotiated), SET_FEATURES. VHOST_USER_F_PROTOCOL_FEATURES is kept
 * in the acked features when offered.
 * @throws VhostUserError `NOT_NEGOTIATED` when a required bit is not offered, and as the
 * messages do.
 */
export function negotiate(fe: VhostUserFrontend, o: NegotiateOptions): Negotiated {
  const offeredFeatures = fe.getFeatures();
  const missing = (o.require ?? 0n) & ~offeredFeatures;
  if (missing !== 0n) {
    throw new VhostUserError(
      "NOT_NEGOTIATED",
      `the back-end does not offer required feature bits 0x${missing.toString(16)}`,
      "GET_FEATURES",
    );
  }
  const pf = 1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES);
  let offeredProtocol = 0n, protocol = 0n;
  if (offeredFeatures & pf) {
    offeredProtocol = fe.getProtocolFeatures();
    protocol = offeredProtocol & o.protocol;
    fe.setProtocolFeatures(protocol);
  }
  fe.setOwner();
  if ((o.backendChannel ?? true) && fe.hasProtocol("BACKEND_REQ")) fe.setBackendReqFd();
  const features = offeredFeatures & (o.features | pf);
  fe.setFeatures(features);
  return { offeredFeatures, features, offeredProtocol, protocol };
}
