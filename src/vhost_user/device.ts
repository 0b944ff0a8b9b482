/**
 * A virtio device behind a vhost-user back-end, driven by the project's own driver queues:
 * connect, negotiate a chosen feature subset, share memfd guest memory, set up N vrings (split
 * or packed) with `SplitDriverQueue` / `PackedDriverQueue` unchanged, then kick, wait for used
 * buffers with a deadline, and stop rings with GET_VRING_BASE.
 *
 * Every wait on the back-end ends in a typed {@link UsedWait} or {@link VhostUserOutcome}:
 * a used buffer, a timeout, a disconnect, a dead back-end process, or a driver-side error when
 * the device returned something the driver refuses (a hostile device).
 *
 * @module
 */

import {
  createDmaMode,
  type DmaApi,
  type DmaMode,
  type DmaModeName,
  RawGpaDmaApi,
} from "../dma/mod.ts";
import {
  createDriverQueue,
  type DriverPolicy,
  type DriverQueue,
  driverQueueFootprint,
  type RingLayout,
  VirtqError,
} from "../virtio/mod.ts";
import { DeviceIotlbDmaApi, type IotlbFill } from "./device_iotlb.ts";
import { outcomeOf, VhostUserError, type VhostUserOutcome } from "./errors.ts";
import { negotiate, type Negotiated, VhostUserFrontend } from "./frontend.ts";
import { closeFd, eventfdCreate, eventfdRead, eventfdWrite } from "./libc.ts";
import { protocolBit, type VhostUserProtocolFeature } from "./protocol.ts";
import { SharedGuestMemory } from "./shared_memory.ts";

/** Feature bit: VIRTIO_F_RING_INDIRECT_DESC (28). */
export const VIRTIO_F_RING_INDIRECT_DESC_BIT = 1n << 28n;
/** Feature bit: VIRTIO_F_RING_EVENT_IDX (29). */
export const VIRTIO_F_RING_EVENT_IDX_BIT = 1n << 29n;
/** Feature bit: VIRTIO_F_VERSION_1 (32). */
export const VIRTIO_F_VERSION_1_BIT = 1n << 32n;
/** Feature bit: VIRTIO_F_ACCESS_PLATFORM (33). */
export const VIRTIO_F_ACCESS_PLATFORM_BIT = 1n << 33n;
/** Feature bit: VIRTIO_F_RING_PACKED (34). */
export const VIRTIO_F_RING_PACKED_BIT = 1n << 34n;
/** Feature bit: VIRTIO_F_IN_ORDER (35). */
export const VIRTIO_F_IN_ORDER_BIT = 1n << 35n;

/**
 * How the device reaches guest memory:
 * - `identity`: no ACCESS_PLATFORM; descriptors carry GPAs (the memory table translates);
 * - `iommu-strict` / `iommu-lazy`: ACCESS_PLATFORM, IOVAs from dma-iommu, INVALIDATE at unmap
 *   (strict) or at the flush-queue flush (lazy);
 * - `iommu-passthrough`: ACCESS_PLATFORM with an identity IOMMU domain (IOVA = GPA).
 */
export type VhostDmaMode = "identity" | "iommu-strict" | "iommu-lazy" | "iommu-passthrough";

/** Every {@link VhostDmaMode}. */
export const VHOST_DMA_MODES: readonly VhostDmaMode[] = [
  "identity",
  "iommu-strict",
  "iommu-lazy",
  "iommu-passthrough",
];

/** Protocol features the device asks for by default (masked with the offer). */
export const DEFAULT_PROTOCOL_FEATURES: readonly VhostUserProtocolFeature[] = [
  "MQ",
  "REPLY_ACK",
  "BACKEND_REQ",
  "CONFIG",
  "STATUS",
  "CONFIGURE_MEM_SLOTS",
];

/** Options of {@link VhostUserDevice.open}. */
export interface VhostUserDeviceOptions {
  /** Path of the back-end's socket. */
  socket: string;
  /** Ring layout; `packed` adds VIRTIO_F_RING_PACKED to the wanted features. */
  layout: RingLayout;
  /**
   * Virtio feature bits the driver accepts (masked with the offer). VERSION_1 is always
   * wanted; ring features (EVENT_IDX, INDIRECT, IN_ORDER) only when listed here.
   */
  features?: bigint;
  /** Bits that must be offered (default: VERSION_1, RING_PACKED for packed, ACCESS_PLATFORM for IOMMU modes). */
  require?: bigint;
  /** Protocol features wanted (default {@link DEFAULT_PROTOCOL_FEATURES}). */
  protocol?: readonly VhostUserProtocolFeature[];
  /** Number of vrings to set up (default 1), each of `queueSize`. */
  queues?: number;
  /** Queue Size (default 256). */
  queueSize?: number;
  /** DMA mode (default `identity`). */
  dma?: VhostDmaMode;
  /** IOTLB fill with ACCESS_PLATFORM (default `on-demand`). */
  iotlb?: IotlbFill;
  /** Device IOTLB: grant read on writable pages (default true; see {@link DeviceIotlbDmaApi.writeImpliesRead}). */
  iotlbWriteImpliesRead?: boolean;
  /** Send INVALIDATEs one byte short, around DPDK's off-by-one (default false; see {@link DeviceIotlbDmaApi.shortInvalidate}). */
  iotlbShortInvalidate?: boolean;
  /** Guest RAM in bytes (default 4 MiB), a multiple of 4096. */
  memorySize?: number;
  /** GPA of guest RAM (default 0x4000_0000). */
  gpaBase?: number;
  /** Reply deadline in ms (default 3000). */
  replyTimeoutMs?: number;
  /** Retry a refused connect for this long (default 0). */
  connectRetryMs?: number;
  /** Driver policy overrides for every queue. */
  policy?: Partial<DriverPolicy>;
  /**
   * Set up and enable the vrings and set DRIVER_OK now (default true); `false` leaves it to
   * {@link VhostUserDevice.startQueue} per vring (hostile values allowed) and then
   * {@link VhostUserDevice.driverOk}.
   */
  start?: boolean;
  /** Returns the back-end process's exit description once it died (launchers provide one). */
  backendExited?: () => string | null;
  /** Trace sink (one line per message). */
  trace?: (line: string) => void;
}

/** Values a hostile activation may override in {@link VhostUserDevice.startQueue}. */
export interface VringOverrides {
  /** SET_VRING_NUM value (default: the queue's size). */
  num?: number;
  /** SET_VRING_BASE value (default 0 split, 0x8000 packed). */
  base?: number;
  /** Descriptor area as the back-end sees it (user address or IOVA). */
  desc?: bigint;
  /** Driver area (available ring / driver event suppression). */
  driver?: bigint;
  /** Device area (used ring / device event suppression). */
  device?: bigint;
  /** SET_VRING_ADDR flags (default 0). */
  flags?: number;
  /** Skip SET_VRING_ENABLE (default false). */
  noEnable?: boolean;
}

/** One vring of a {@link VhostUserDevice}. */
export interface VhostVring {
  /** Vring index. */
  readonly index: number;
  /** The project's driver queue; tokens are numbers. */
  readonly queue: DriverQueue<number>;
  /** Kick eventfd (we write). */
  readonly kickFd: number;
  /** Call eventfd (the back-end writes; non-blocking). */
  readonly callFd: number;
  /** GPA of the queue's ring memory. */
  readonly ringGpa: number;
}

/** What {@link VhostUserDevice.waitUsed} observed. */
export type UsedWait =
  | { readonly kind: "used"; readonly token: number; readonly len: number }
  | { readonly kind: "timeout"; readonly message: string }
  | { readonly kind: "disconnected"; readonly message: string }
  | { readonly kind: "exited"; readonly message: string }
  | { readonly kind: "driver-error"; readonly error: VirtqError };

const PAGE = 4096;

/**
 * Used-ring polls per clock reading in {@link VhostUserDevice.waitUsed}: an empty poll costs a
 * few nanoseconds, `performance.now()` about 100 ns.
 */
const POLLS_PER_CLOCK = 64;

/** A vhost-user device session with the project's driver queues. */
export class VhostUserDevice {
  /** The front-end connection. */
  readonly frontend: VhostUserFrontend;
  /** Guest RAM shared with the back-end. */
  readonly shared: SharedGuestMemory;
  /** What was negotiated. */
  readonly negotiated: Negotiated;
  /** Ring layout. */
  readonly layout: RingLayout;
  /** The DMA mode name. */
  readonly dmaMode: VhostDmaMode;
  /** The project's DMA mode (driver API, device space, IOMMU model). */
  readonly dma: DmaMode;
  /** The driver's DMA API as the queues use it (wrapped for the device IOTLB with ACCESS_PLATFORM). */
  readonly dmaApi: DmaApi;
  /** The device IOTLB feeder (ACCESS_PLATFORM modes), else `null`. */
  readonly iotlb: DeviceIotlbDmaApi | null;
  /** The vrings. */
  readonly vrings: readonly VhostVring[];
  /** GPA of the buffer area (after the rings). */
  readonly bufferGpa: number;
  /** Bytes of the buffer area. */
  readonly bufferSize: number;
  readonly #backendExited: () => string | null;
  #closed = false;
  /** Vrings set up with {@link startQueue} and enabled. */
  readonly #started = new Set<number>();
  /** Vrings stopped with GET_VRING_BASE and not set up again. */
  readonly #stopped = new Set<number>();
  /** Vrings enabled (or re-announced) since the last GET_VRING_BASE of any vring. */
  readonly #enabledSinceStop = new Set<number>();

  private constructor(
    fe: VhostUserFrontend,
    shared: SharedGuestMemory,
    negotiated: Negotiated,
    o: VhostUserDeviceOptions,
  ) {
    this.frontend = fe;
    this.shared = shared;
    this.negotiated = negotiated;
    this.layout = o.layout;
    this.dmaMode = o.dma ?? "identity";
    this.#backendExited = o.backendExited ?? (() => null);
    const memory = shared.memory;
    const modeName: DmaModeName = this.dmaMode === "identity"
      ? "none"
      : this.dmaMode === "iommu-passthrough"
      ? "iommu-identity"
      : this.dmaMode;
    this.dma = createDmaMode(modeName, memory);
    if (this.dmaMode === "identity") {
      this.iotlb = null;
      this.dmaApi = new RawGpaDmaApi();
    } else {
      this.iotlb = new DeviceIotlbDmaApi(
        fe,
        shared,
        this.dma,
        o.iotlb ?? "on-demand",
        o.iotlbWriteImpliesRead ?? true,
        o.iotlbShortInvalidate ?? false,
      );
      this.iotlb.prefaultIdentity();
      this.dmaApi = this.iotlb;
    }
    const n = o.queues ?? 1, size = o.queueSize ?? 256;
    const foot = roundUp(driverQueueFootprint(o.layout, size, negotiated.features), PAGE);
    const base = shared.regions[0].gpa;
    const vrings: VhostVring[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const ringGpa = base + i * foot;
        const queue = createDriverQueue<number>(o.layout, {
          memory,
          dma: this.dmaApi,
          size,
          features: negotiated.features,
          ringGpa,
          policy: o.policy,
        });
        const kickFd = eventfdCreate(false);
        const callFd = eventfdCreate(true);
        vrings.push({ index: i, queue, kickFd, callFd, ringGpa });
      }
    } catch (e) {
      for (const v of vrings) {
        closeFd(v.kickFd);
        closeFd(v.callFd);
      }
      throw e;
    }
    this.vrings = vrings;
    this.bufferGpa = base + n * foot;
    this.bufferSize = shared.regions[0].size - n * foot;
    if (this.bufferSize < PAGE) {
      throw new VhostUserError("BAD_ARGUMENT", `memorySize leaves no room for buffers`);
    }
  }

  /**
   * Connects, negotiates, shares memory and (unless `start: false`) sets up every vring.
   * @throws VhostUserError `CONNECT_FAILED`, `NOT_NEGOTIATED`, and any back-end outcome of the
   * handshake (`TIMEOUT`, `DISCONNECTED`, `NACK`, `BAD_REPLY`); everything opened is closed.
   */
  static open(o: VhostUserDeviceOptions): VhostUserDevice {
    const dmaMode = o.dma ?? "identity";
    const iommu = dmaMode !== "identity";
    let want = (o.features ?? 0n) | VIRTIO_F_VERSION_1_BIT;
    let require = o.require ?? VIRTIO_F_VERSION_1_BIT;
    if (o.layout === "packed") {
      want |= VIRTIO_F_RING_PACKED_BIT;
      if (o.require === undefined) require |= VIRTIO_F_RING_PACKED_BIT;
    } else want &= ~VIRTIO_F_RING_PACKED_BIT;
    if (iommu) {
      want |= VIRTIO_F_ACCESS_PLATFORM_BIT;
      if (o.require === undefined) require |= VIRTIO_F_ACCESS_PLATFORM_BIT;
    } else want &= ~VIRTIO_F_ACCESS_PLATFORM_BIT;
    let protocol = 0n;
    for (const p of o.protocol ?? DEFAULT_PROTOCOL_FEATURES) protocol |= protocolBit(p);
    const fe = VhostUserFrontend.connect(o.socket, {
      replyTimeoutMs: o.replyTimeoutMs,
      connectRetryMs: o.connectRetryMs,
      trace: o.trace,
    });
    let shared: SharedGuestMemory | null = null;
    try {
      const negotiated = negotiate(fe, { features: want, require, protocol });
      if (iommu && !(fe.hasProtocol("REPLY_ACK") && fe.hasProtocol("BACKEND_REQ"))) {
        throw new VhostUserError(
          "NOT_NEGOTIATED",
          "ACCESS_PLATFORM needs protocol features REPLY_ACK and BACKEND_REQ (device IOTLB)",
        );
      }
      const size = o.memorySize ?? 4 << 20;
      shared = SharedGuestMemory.create([{ gpa: o.gpaBase ?? 0x4000_0000, size, name: "ram" }]);
      fe.setMemTable(shared.memTable(), shared.fds());
      const dev = new VhostUserDevice(fe, shared, negotiated, o);
      if (o.start ?? true) {
        for (const v of dev.vrings) dev.startQueue(v.index);
        dev.driverOk();
      }
      return dev;
    } catch (e) {
      fe.close();
      shared?.close();
      throw e;
    }
  }

  /** The address the back-end uses for bus address `bus` of a ring area (IOVA or user address). */
  ringAddress(bus: number | bigint): bigint {
    if (this.iotlb !== null) return BigInt(bus);
    const ua = this.shared.userAddrOf(Number(bus));
    return ua < 0n ? BigInt(bus) : ua;
  }

  /**
   * Sets up vring `index` on the back-end: SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR,
   * SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ENABLE (when protocol features are negotiated).
   * `over` replaces any value with a hostile one (sizes, addresses outside the memory table).
   * @throws VhostUserError as the messages do.
   */
  startQueue(index: number, over: VringOverrides = {}): void {
    const v = this.vrings[index];
    const a = v.queue.addresses;
    const fe = this.frontend;
    fe.setVringNum(index, over.num ?? v.queue.size);
    this.iotlb?.repushCoherent();
    fe.setVringBase(index, over.base ?? (this.layout === "packed" ? 0x8000 : 0));
    fe.setVringAddr({
      index,
      flags: over.flags ?? 0,
      desc: over.desc ?? this.ringAddress(a.descAddr),
      used: over.device ?? this.ringAddress(a.deviceAddr),
      avail: over.driver ?? this.ringAddress(a.driverAddr),
      log: 0n,
    });
    fe.setVringKick(index, v.kickFd);
    fe.setVringCall(index, v.callFd);
    this.#stopped.delete(index);
    if (this.negotiated.offeredProtocol === 0n || over.noEnable) return;
    fe.setVringEnable(index, true);
    this.#started.add(index);
    this.#enabledSinceStop.add(index);
    this.#reannounce();
  }

  /**
   * After a GET_VRING_BASE, re-announces every other vring still running with SET_VRING_ENABLE
   * 0 then 1. DPDK's vhost library stops the whole device on GET_VRING_BASE of any vring
   * (`vhost_user_get_vring_base` calls `vhost_destroy_device_notify`), and its vhost PMD's
   * `destroy_device` forgets every vring's enable state (`state->cur[i] = false`), which only a
   * `vring_state_changed` callback sets again; the library calls it when a vring's readiness
   * changes, so a vring that was never stopped is never re-announced and the PMD never polls it
   * again (`update_queuing_status` needs `state->cur[virtqueue_id]`). Toggling the enable bit
   * is a readiness change. Harmless for back-ends that stop only the one vring (QEMU stops and
   * starts all vrings of a device together, so it never meets this).
   */
  #reannounce(): void {
    for (const j of this.#started) {
      if (this.#stopped.has(j) || this.#enabledSinceStop.has(j)) continue;
      this.frontend.setVringEnable(j, false);
      this.frontend.setVringEnable(j, true);
      this.#enabledSinceStop.add(j);
    }
  }

  /**
   * Sets DRIVER_OK (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK, virtio §3.1.1) with
   * SET_STATUS when protocol STATUS is negotiated: DPDK does not start the device before it
   * (its `virtio_is_ready` waits for DRIVER_OK). A no-op without STATUS.
   */
  driverOk(): void {
    if (this.frontend.hasProtocol("STATUS")) this.frontend.setStatus(0x0f);
  }

  /**
   * Publishes added buffers of vring `index` and writes the kick eventfd when the driver queue
   * says a notification is due. @returns whether the back-end was notified.
   */
  kick(index: number): boolean {
    const v = this.vrings[index];
    if (!v.queue.kick()) return false;
    eventfdWrite(v.kickFd);
    return true;
  }

  /** Writes the kick eventfd of vring `index` unconditionally (a spurious or hostile kick). */
  notify(index: number): void {
    eventfdWrite(this.vrings[index].kickFd);
  }

  #used: { kind: "used"; token: number; len: number } = { kind: "used", token: 0, len: 0 };

  /**
   * Returns the next used buffer of vring `index`, waiting up to `timeoutMs`: spins on the used
   * ring for `spinUs` microseconds, then blocks in poll() on the call eventfd (serving IOTLB
   * misses meanwhile). A call alone is not progress (libvhost-user calls once on SET_VRING_CALL):
   * only the used ring is. A `used` result is one object per device, overwritten by the next
   * call: read `token` and `len` before waiting again.
   *
   * The clock is read once per 64 empty polls, and not at all when the
   * buffer comes back within the first ones: `performance.now()` costs about 100 ns in Deno,
   * more than a poll of the used ring, so reading it per spin delays noticing a used buffer.
   * `timeoutMs` and `spinUs` count from the first clock reading (at most a few hundred
   * nanoseconds of polling after the call).
   */
  waitUsed(index: number, timeoutMs: number, spinUs = 0): UsedWait {
    const q = this.vrings[index].queue;
    try {
      for (let i = 0; i < POLLS_PER_CLOCK; i++) {
        const tok = q.getUsed();
        if (tok !== undefined) return this.#usedResult(tok, q.usedLen);
      }
    } catch (e) {
      return this.#waitError(e);
    }
    return this.#waitTimed(index, timeoutMs, spinUs);
  }

  /** The reused `used` result (the round-trip hot path allocates nothing). */
  #usedResult(token: number, len: number): UsedWait {
    const u = this.#used;
    u.token = token;
    u.len = len;
    return u;
  }

  /** {@link waitUsed} once the first polls found nothing: spin with the clock, then sleep. */
  #waitTimed(index: number, timeoutMs: number, spinUs: number): UsedWait {
    const v = this.vrings[index];
    const q = v.queue;
    const t0 = performance.now();
    const deadline = t0 + timeoutMs;
    const spinEnd = t0 + spinUs / 1000;
    try {
      for (;;) {
        for (let i = 0; i < POLLS_PER_CLOCK; i++) {
          const tok = q.getUsed();
          if (tok !== undefined) return this.#usedResult(tok, q.usedLen);
        }
        const now = performance.now();
        if (now < spinEnd) continue;
        this.iotlb?.tick();
        if (!q.enableCallbacks()) {
          q.disableCallbacks();
          continue;
        }
        const left = deadline - now;
        if (left <= 0) return this.#timeout(index, timeoutMs);
        const r = this.frontend.waitCall(v.callFd, Math.min(left, 50));
        if (r === "call") eventfdRead(v.callFd);
        q.disableCallbacks();
        if (r === "timeout" && this.#backendExited() !== null) {
          return { kind: "exited", message: this.#backendExited()! };
        }
      }
    } catch (e) {
      return this.#waitError(e);
    }
  }

  /** A driver error or a lost connection during a wait, as an outcome; anything else rethrown. */
  #waitError(e: unknown): UsedWait {
    if (e instanceof VirtqError) return { kind: "driver-error", error: e };
    if (e instanceof VhostUserError && e.code === "DISCONNECTED") {
      const exited = this.#backendExited();
      return exited !== null
        ? { kind: "exited", message: exited }
        : { kind: "disconnected", message: e.message };
    }
    throw e;
  }

  #timeout(index: number, ms: number): UsedWait {
    const exited = this.#backendExited();
    if (exited !== null) return { kind: "exited", message: exited };
    if (this.frontend.socket.peerClosed()) {
      return { kind: "disconnected", message: "the back-end closed the connection" };
    }
    return {
      kind: "timeout",
      message: `no used buffer on vring ${index} within ${ms} ms (${
        this.vrings[index].queue.outstanding
      } outstanding)`,
    };
  }

  /**
   * GET_VRING_BASE of vring `index` as an outcome (the ring stops on the back-end). The next
   * {@link startQueue} of any vring re-announces the vrings still running (SET_VRING_ENABLE 0,
   * then 1), so a back-end that stopped the whole device polls them again.
   */
  getVringBase(index: number): VhostUserOutcome<number> {
    // the vring stops; some back-ends (DPDK) stop the whole device: see #reannounce
    this.#stopped.add(index);
    this.#enabledSinceStop.clear();
    const r = outcomeOf(() => this.frontend.getVringBase(index));
    if (r.kind !== "ok" && this.#backendExited() !== null) {
      return { kind: "exited", message: this.#backendExited()! };
    }
    return r;
  }

  /** True once {@link VhostUserDevice.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes the connection, the eventfds and the shared memory (idempotent). The driver queues
   * and the guest memory must not be used afterwards.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.frontend.close();
    for (const v of this.vrings) {
      closeFd(v.kickFd);
      closeFd(v.callFd);
    }
    this.shared.close();
  }
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
