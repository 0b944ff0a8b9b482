/**
 * The device side of a virtio transport, independent of how registers are reached: device
 * status with its state machine (spec §2.1, §3.1.1), feature windows and negotiation (§2.2),
 * per-queue configuration (size, enable, ring addresses, MSI-X vector, notification offset and
 * data, §4.1.4.3 / §4.2.2), per-queue reset (VIRTIO_F_RING_RESET, §2.6.1, §4.1.4.3.2),
 * configuration generation (§2.5.1 / §4.1.4.3) and available buffer notifications with
 * VIRTIO_F_NOTIFICATION_DATA (§2.9). {@link VirtioPciCommonCfg} and {@link VirtioMmioRegisters}
 * are the two register front-ends over it.
 *
 * Hostile register writes never throw: the write the spec forbids is rejected (the register
 * keeps its value, or reads back what the spec says, e.g. NO_VECTOR), recorded in
 * {@link TransportDevice.rejections} with a catalogue code (`VirtqError`), and running queues are
 * untouched. A queue that fails to activate, or an engine error reported through
 * {@link TransportDevice.queueFailed}, puts the device in DEVICE_NEEDS_RESET (§2.1.2).
 *
 * @module
 */

import type { GuestMemory } from "../memory/mod.ts";
import { type U64, u64Add, u64FromParts } from "../memory/mod.ts";
import {
  DMA_ACCESS_READ,
  type DmaAddressSpace,
  DmaTranslation,
  translateContiguous,
} from "../dma/mod.ts";
import {
  type ChainPolicy,
  createDeviceQueue,
  type DeviceQueue,
  featureBit,
  hasFeature,
  isValidPackedQueueSize,
  isValidSplitQueueSize,
  negotiateFeatures,
  type NegotiationPolicy,
  type RingLayout,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VirtqError,
  type VirtqErrorCode,
} from "../virtio/mod.ts";
import {
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MSI_NO_VECTOR,
} from "./constants.ts";
import { decodeNotificationData } from "./notify.ts";

/** Options of a {@link TransportDevice}. */
export interface TransportDeviceOptions {
  /** Guest memory the rings live in. */
  memory: GuestMemory;
  /** The device's DMA view (ring areas and buffers are translated through it). */
  dma: DmaAddressSpace;
  /** Feature bits the device offers (§2.2). */
  deviceFeatures: bigint;
  /** Maximum size of each queue (`num_queues` = length; each 1..32768). */
  queueSizeMax: readonly number[];
  /** MSI-X table size (PCI); 0 (default): no MSI-X, every vector write reads back NO_VECTOR. */
  msixVectors?: number;
  /** `queue_notify_data` per queue (VIRTIO_F_NOTIF_CONFIG_DATA, §4.1.4.3); default the index. */
  queueNotifyData?: readonly number[];
  /** `queue_notify_off` per queue (§4.1.4.3); default the index. */
  queueNotifyOff?: readonly number[];
  /** Chain validation policy of the queues the device creates. */
  policy?: Partial<ChainPolicy>;
  /** Feature negotiation policy (default: `negotiateFeatures` defaults). */
  negotiation?: NegotiationPolicy;
  /** Device-specific configuration space (copied); read by the front-ends. */
  config?: Uint8Array;
}

/** One rejected register write or notification, with its catalogue code. */
export interface TransportRejection {
  /** Catalogue code. */
  code: VirtqErrorCode;
  /** The error (message names the register and value). */
  error: VirtqError;
}

/** The transport-visible state of one queue (read-only view). */
export interface TransportQueueState {
  /** Largest size the device supports for it (QueueNumMax). */
  readonly sizeMax: number;
  /** Current `queue_size` (starts at {@link sizeMax}; the driver may reduce it). */
  readonly size: number;
  /** `queue_enable` / `QueueReady`. */
  readonly enabled: boolean;
  /** `queue_desc`, `queue_driver`, `queue_device` (u64 as bigint). */
  readonly descAddr: bigint;
  /** Driver area address. */
  readonly driverAddr: bigint;
  /** Device area address. */
  readonly deviceAddr: bigint;
  /** `queue_msix_vector`. */
  readonly msixVector: number;
  /** `queue_notify_off`. */
  readonly notifyOff: number;
  /** `queue_notify_data`. */
  readonly notifyData: number;
  /** The engine driving the queue while enabled, else `null`. */
  readonly engine: DeviceQueue | null;
}

interface Q {
  sizeMax: number;
  size: number;
  enabled: boolean;
  desc: [number, number];
  driver: [number, number];
  device: [number, number];
  msixVector: number;
  notifyOff: number;
  notifyData: number;
  engine: DeviceQueue | null;
}

/** Which area of a queue an address register names. */
export type QueueArea = "desc" | "driver" | "device";

/** Outcome of {@link TransportDevice.notify}. */
export interface NotifyResult {
  /** The queue notified, or `null` when the notification was rejected. */
  queue: number | null;
  /** With VIRTIO_F_NOTIFICATION_DATA: whether the data agreed with the ring. */
  dataMatches?: boolean;
}

const MAX_REJECTIONS = 256;

/** The transport-independent device model (see the module doc). */
export class TransportDevice {
  /** Guest memory. */
  readonly memory: GuestMemory;
  /** The device's DMA view. */
  readonly dma: DmaAddressSpace;
  /** Offered features. */
  readonly deviceFeatures: bigint;
  /** MSI-X table size. */
  readonly msixVectors: number;
  /** Device configuration space. */
  readonly config: Uint8Array;

  readonly #queues: Q[];
  readonly #policy: Partial<ChainPolicy> | undefined;
  readonly #negotiation: NegotiationPolicy | undefined;
  readonly #tr = new DmaTranslation();
  #status = 0;
  #driverFeatures = 0n;
  #negotiated = 0n;
  #generation = 0;
  #msixConfig = VIRTIO_MSI_NO_VECTOR;
  #isr = 0;
  #rejected: TransportRejection[] = [];
  #rejectCount = 0;
  #lastInterrupts: number[] = [];

  /**
   * Creates the device: every queue disabled at its maximum size, status 0.
   * @throws RangeError when a `queueSizeMax` entry is not 1..32768 or `msixVectors` is not
   * 0..2048 (configuration errors of the model, not guest input).
   */
  constructor(opts: TransportDeviceOptions) {
    this.memory = opts.memory;
    this.dma = opts.dma;
    this.deviceFeatures = opts.deviceFeatures;
    this.msixVectors = opts.msixVectors ?? 0;
    if (
      !(Number.isInteger(this.msixVectors) && this.msixVectors >= 0 && this.msixVectors <= 2048)
    ) {
      throw new RangeError(`msixVectors ${this.msixVectors} is not 0..2048 (PCI MSI-X table size)`);
    }
    this.config = new Uint8Array(opts.config ?? new Uint8Array(0));
    this.#policy = opts.policy;
    this.#negotiation = opts.negotiation;
    this.#queues = opts.queueSizeMax.map((max, i) => {
      if (!isValidPackedQueueSize(max)) {
        throw new RangeError(`queueSizeMax[${i}] = ${max} is not 1..32768`);
      }
      return {
        sizeMax: max,
        size: max,
        enabled: false,
        desc: [0, 0],
        driver: [0, 0],
        device: [0, 0],
        msixVector: VIRTIO_MSI_NO_VECTOR,
        notifyOff: opts.queueNotifyOff?.[i] ?? i,
        notifyData: opts.queueNotifyData?.[i] ?? i,
        engine: null,
      };
    });
  }

  // --- Observation ----------------------------------------------------------------------

  /** `num_queues`. */
  get numQueues(): number {
    return this.#queues.length;
  }
  /** `device_status`. */
  get status(): number {
    return this.#status;
  }
  /** Features written by the driver so far (all windows). */
  get driverFeatures(): bigint {
    return this.#driverFeatures;
  }
  /** Negotiated features: set when FEATURES_OK was accepted, else 0. */
  get negotiated(): bigint {
    return this.#negotiated;
  }
  /** The ring layout of the negotiated (else the written) features. */
  get layout(): RingLayout {
    const f = this.#status & VIRTIO_CONFIG_S_FEATURES_OK ? this.#negotiated : this.#driverFeatures;
    return hasFeature(f, VIRTIO_F_RING_PACKED) ? "packed" : "split";
  }
  /** Configuration generation counter (PCI reads its low 8 bits). */
  get configGeneration(): number {
    return this.#generation;
  }
  /** `config_msix_vector`. */
  get msixConfig(): number {
    return this.#msixConfig;
  }
  /** MMIO `InterruptStatus` / PCI ISR bits (bit 0 used buffer, bit 1 configuration change). */
  get interruptStatus(): number {
    return this.#isr;
  }
  /** The last {@link MAX_REJECTIONS} rejected writes, oldest first. */
  get rejections(): readonly TransportRejection[] {
    return this.#rejected;
  }
  /** Total number of rejected writes since construction. */
  get rejectionCount(): number {
    return this.#rejectCount;
  }
  /** MSI-X vectors signalled by the last interrupt-raising call (config or used buffer). */
  get lastInterrupts(): readonly number[] {
    return this.#lastInterrupts;
  }
  /** State of queue `i`, or `undefined` when there is no such queue. */
  queue(i: number): TransportQueueState | undefined {
    const q = this.#queues[i];
    if (q === undefined) return undefined;
    return {
      sizeMax: q.sizeMax,
      size: q.size,
      enabled: q.enabled,
      descAddr: BigInt(u64FromParts(q.desc[0], q.desc[1])),
      driverAddr: BigInt(u64FromParts(q.driver[0], q.driver[1])),
      deviceAddr: BigInt(u64FromParts(q.device[0], q.device[1])),
      msixVector: q.msixVector,
      notifyOff: q.notifyOff,
      notifyData: q.notifyData,
      engine: q.engine,
    };
  }

  /**
   * Records a rejected write (never throws). Public so the front-ends report access errors.
   * @returns the error recorded.
   */
  reject(code: VirtqErrorCode, detail: string): VirtqError {
    const error = new VirtqError(code, detail);
    this.#rejectCount++;
    if (this.#rejected.length === MAX_REJECTIONS) this.#rejected.shift();
    this.#rejected.push({ code, error });
    return error;
  }

  // --- Device status (§2.1, §3.1.1) -------------------------------------------------------

  /**
   * Writes `device_status` / MMIO `Status`. 0 resets the device (§2.4: every queue disabled and
   * reset, features, vectors and interrupt status cleared; the reset completes at once, so the
   * driver's following read returns 0). Otherwise the write must keep every bit already set
   * (§2.1.2 the driver MUST NOT clear a bit), may not set DEVICE_NEEDS_RESET, and sets bits in
   * the order of §3.1.1 (DRIVER after ACKNOWLEDGE, FEATURES_OK after DRIVER, DRIVER_OK after
   * FEATURES_OK); FAILED may be set at any time. Setting FEATURES_OK runs the negotiation
   * (§2.2.1, §2.2.2): a feature set the device refuses leaves FEATURES_OK clear (the driver
   * re-reads status, §3.1.1 step 6). Rejected: `STATUS_TRANSITION_INVALID`,
   * `FEATURES_WRITE_INVALID` (FEATURES_OK refused).
   */
  writeStatus(value: number): void {
    const v = value & 0xff;
    if (v === 0) {
      this.#reset();
      return;
    }
    const old = this.#status;
    if ((old & ~v) !== 0) {
      this.reject(
        "STATUS_TRANSITION_INVALID",
        `device_status 0x${v.toString(16)} clears bits 0x${(old & ~v).toString(16)} of 0x${
          old.toString(16)
        }`,
      );
      return;
    }
    const added = v & ~old;
    if ((added & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) {
      this.reject(
        "STATUS_TRANSITION_INVALID",
        "the driver set DEVICE_NEEDS_RESET (device-only bit)",
      );
      return;
    }
    const order: [number, number, string][] = [
      [VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_ACKNOWLEDGE, "DRIVER before ACKNOWLEDGE"],
      [VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_DRIVER, "FEATURES_OK before DRIVER"],
      [VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, "DRIVER_OK before FEATURES_OK"],
    ];
    for (const [bit, needs, what] of order) {
      if ((added & bit) !== 0 && (v & needs) === 0) {
        this.reject("STATUS_TRANSITION_INVALID", `device_status 0x${v.toString(16)}: ${what}`);
        return;
      }
    }
    let next = v;
    if ((added & VIRTIO_CONFIG_S_FEATURES_OK) !== 0) {
      const n = negotiateFeatures(this.deviceFeatures, this.#driverFeatures, this.#negotiation);
      const notOffered = this.#driverFeatures & ~this.deviceFeatures;
      if (notOffered !== 0n || !n.ok) {
        this.reject(
          "FEATURES_WRITE_INVALID",
          notOffered !== 0n
            ? `FEATURES_OK refused: driver accepted features 0x${
              notOffered.toString(16)
            } the device did not offer`
            : `FEATURES_OK refused: ${n.reason}`,
        );
        next &= ~(VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
      } else this.#negotiated = n.negotiated;
    }
    this.#status = next | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
  }

  #reset(): void {
    this.#status = 0;
    this.#driverFeatures = 0n;
    this.#negotiated = 0n;
    this.#msixConfig = VIRTIO_MSI_NO_VECTOR;
    this.#isr = 0;
    for (const q of this.#queues) this.#resetQueue(q);
  }

  #resetQueue(q: Q): void {
    q.engine?.reset();
    q.engine = null;
    q.enabled = false;
    q.size = q.sizeMax;
    q.desc = [0, 0];
    q.driver = [0, 0];
    q.device = [0, 0];
    q.msixVector = VIRTIO_MSI_NO_VECTOR;
  }

  /**
   * The device entered an error state (§2.1.2): sets DEVICE_NEEDS_RESET and, when DRIVER_OK is
   * set, sends a configuration change notification.
   */
  needsReset(): void {
    if ((this.#status & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) return;
    this.#status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    if ((this.#status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0) this.#configInterrupt();
  }

  /**
   * Reports that the engine of queue `i` raised a device-side `VirtqError` (a hostile ring):
   * the queue stops and the device needs a reset (§2.1.2).
   */
  queueFailed(i: number): void {
    if (this.#queues[i] !== undefined) this.needsReset();
  }

  // --- Features (§2.2, §4.1.4.3, §4.2.2) --------------------------------------------------

  /** `device_feature` for window `select` (bits 32·select .. 32·select+31). */
  deviceFeatureWindow(select: number): number {
    return Number((this.deviceFeatures >> (32n * BigInt(select >>> 0))) & 0xffff_ffffn);
  }

  /** `driver_feature` window `select` as written so far. */
  driverFeatureWindow(select: number): number {
    return Number((this.#driverFeatures >> (32n * BigInt(select >>> 0))) & 0xffff_ffffn);
  }

  /**
   * Writes `driver_feature` window `select`. Allowed while DRIVER is set and FEATURES_OK is not
   * (§3.1.1 steps 4-5); otherwise rejected with `FEATURES_WRITE_INVALID` and ignored.
   */
  writeDriverFeatures(select: number, value: number): void {
    const s = this.#status;
    if ((s & VIRTIO_CONFIG_S_DRIVER) === 0 || (s & VIRTIO_CONFIG_S_FEATURES_OK) !== 0) {
      this.reject(
        "FEATURES_WRITE_INVALID",
        `driver_feature[${select >>> 0}] = 0x${(value >>> 0).toString(16)} with device_status 0x${
          s.toString(16)
        } ` +
          `(features are written after DRIVER and before FEATURES_OK)`,
      );
      return;
    }
    const shift = 32n * BigInt(select >>> 0);
    const mask = 0xffff_ffffn << shift;
    this.#driverFeatures = (this.#driverFeatures & ~mask) | (BigInt(value >>> 0) << shift);
  }

  // --- Configuration (§2.5.1) -------------------------------------------------------------

  /**
   * The device changes its configuration space: writes `bytes` at `offset`, bumps the
   * configuration generation (§2.5.1 "the device MUST change config_generation if there is any
   * risk of a driver seeing an inconsistent configuration state") and, after DRIVER_OK, sends a
   * configuration change notification (`config_msix_vector` / MMIO InterruptStatus bit 1).
   * @throws RangeError when the bytes do not fit the configuration space (model misuse).
   */
  updateConfig(offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > this.config.length) {
      throw new RangeError(`config write ${offset}+${bytes.length} beyond ${this.config.length}`);
    }
    this.config.set(bytes, offset);
    this.#generation = (this.#generation + 1) >>> 0;
    if ((this.#status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0) this.#configInterrupt();
  }

  #configInterrupt(): void {
    this.#isr |= VIRTIO_MMIO_INT_CONFIG;
    this.#lastInterrupts = this.#msixConfig === VIRTIO_MSI_NO_VECTOR ? [] : [this.#msixConfig];
  }

  /** Clears MMIO InterruptStatus bits (`InterruptACK`, §4.2.2). */
  ackInterrupt(bits: number): void {
    this.#isr &= ~bits;
  }

  /**
   * Reads and clears the ISR status (PCI, §4.1.4.5: reading the ISR resets it to 0).
   */
  readIsr(): number {
    const v = this.#isr;
    this.#isr = 0;
    return v;
  }

  /**
   * A used buffer notification for queue `i` (the engine's `flush()` returned true): sets
   * InterruptStatus bit 0 and signals the queue's MSI-X vector unless it is NO_VECTOR.
   */
  signalUsed(i: number): void {
    const q = this.#queues[i];
    if (q === undefined) return;
    this.#isr |= VIRTIO_MMIO_INT_VRING;
    this.#lastInterrupts = q.msixVector === VIRTIO_MSI_NO_VECTOR ? [] : [q.msixVector];
  }

  /**
   * Writes `config_msix_vector` (§4.1.5.1.2): a vector outside the MSI-X table cannot be mapped,
   * so the register reads back NO_VECTOR (`MSIX_VECTOR_INVALID` recorded).
   */
  writeMsixConfig(vector: number): void {
    this.#msixConfig = this.#vector(vector, "config_msix_vector");
  }

  #vector(v: number, what: string): number {
    const x = v & 0xffff;
    if (x === VIRTIO_MSI_NO_VECTOR || x < this.msixVectors) return x;
    this.reject(
      "MSIX_VECTOR_INVALID",
      `${what} = ${x}: the MSI-X table has ${this.msixVectors} vectors; reads back NO_VECTOR`,
    );
    return VIRTIO_MSI_NO_VECTOR;
  }

  // --- Queues (§4.1.4.3, §4.2.2) ------------------------------------------------------------

  #sel(sel: number, what: string): Q | null {
    const q = this.#queues[sel];
    if (q !== undefined) return q;
    this.reject(
      "QUEUE_SELECT_OUT_OF_RANGE",
      `${what} written with queue_select ${sel}, the device has ${this.#queues.length} queues`,
    );
    return null;
  }

  #whileEnabled(q: Q, sel: number, what: string): boolean {
    if (!q.enabled) return false;
    this.reject("QUEUE_CONFIG_WHILE_ENABLED", `${what} written while queue ${sel} is enabled`);
    return true;
  }

  /**
   * Writes `queue_size` / `QueueNum` of queue `sel`: 1..QueueNumMax, a power of 2 for split
   * rings (§4.1.4.3.2, §2.7); only while the queue is disabled. Rejected:
   * `QUEUE_SELECT_OUT_OF_RANGE`, `QUEUE_CONFIG_WHILE_ENABLED`, `QUEUE_SIZE_WRITE_INVALID`.
   */
  writeQueueSize(sel: number, value: number): void {
    const q = this.#sel(sel, "queue_size");
    if (q === null || this.#whileEnabled(q, sel, "queue_size")) return;
    const split = this.layout === "split";
    if (value < 1 || value > q.sizeMax || (split && !isValidSplitQueueSize(value))) {
      this.reject(
        "QUEUE_SIZE_WRITE_INVALID",
        `queue ${sel} size ${value}: not 1..${q.sizeMax}${split ? " and a power of 2" : ""}`,
      );
      return;
    }
    q.size = value;
  }

  /** Writes one 32-bit half (`hi` false: low) of a ring address of queue `sel`. */
  writeQueueAddress(sel: number, area: QueueArea, hi: boolean, value: number): void {
    const what = `queue_${area}${hi ? " (high)" : ""}`;
    const q = this.#sel(sel, what);
    if (q === null || this.#whileEnabled(q, sel, what)) return;
    q[area][hi ? 1 : 0] = value >>> 0;
  }

  /** Writes `queue_msix_vector` of queue `sel` (§4.1.5.1.2; NO_VECTOR read back on failure). */
  writeQueueMsixVector(sel: number, vector: number): void {
    const q = this.#sel(sel, "queue_msix_vector");
    if (q === null) return;
    q.msixVector = this.#vector(vector, `queue_msix_vector of queue ${sel}`);
  }

  /**
   * Writes `queue_enable` / `QueueReady` of queue `sel`.
   * - 1 on a disabled queue after FEATURES_OK (§3.1.1 step 7): the queue is created over its
   *   ring addresses by the engine factory (`createDeviceQueue`, layout from the negotiated
   *   features); an engine error (`QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`)
   *   leaves it disabled and sets DEVICE_NEEDS_RESET (recorded).
   * - 0: PCI forbids it (§4.1.4.3.2, `QUEUE_ENABLE_INVALID`); MMIO uses it to stop the queue
   *   (§4.2.3.2: the engine is reset, the registers may be rewritten).
   * - 1 on an enabled queue, or any other value: `QUEUE_ENABLE_INVALID`.
   */
  writeQueueEnable(sel: number, value: number, transport: "pci" | "mmio"): void {
    const q = this.#sel(sel, transport === "pci" ? "queue_enable" : "QueueReady");
    if (q === null) return;
    if (value === 0 && transport === "mmio") {
      if (q.enabled) {
        q.engine?.reset();
        q.engine = null;
        q.enabled = false;
      }
      return;
    }
    if (value !== 1 || q.enabled) {
      this.reject(
        "QUEUE_ENABLE_INVALID",
        q.enabled && value === 1
          ? `queue ${sel} enabled twice`
          : `queue_enable of queue ${sel} written with ${value}`,
      );
      return;
    }
    if ((this.#status & VIRTIO_CONFIG_S_FEATURES_OK) === 0) {
      this.reject("QUEUE_ENABLE_INVALID", `queue ${sel} enabled before FEATURES_OK`);
      return;
    }
    try {
      q.engine = createDeviceQueue(this.layout, {
        memory: this.memory,
        dma: this.dma,
        size: q.size,
        addresses: {
          descAddr: u64FromParts(q.desc[0], q.desc[1]),
          driverAddr: u64FromParts(q.driver[0], q.driver[1]),
          deviceAddr: u64FromParts(q.device[0], q.device[1]),
        },
        features: this.#negotiated,
        policy: this.#policy,
      });
      q.enabled = true;
    } catch (e) {
      if (!(e instanceof VirtqError)) throw e;
      this.#rejectCount++;
      if (this.#rejected.length === MAX_REJECTIONS) this.#rejected.shift();
      this.#rejected.push({ code: e.code, error: e });
      this.needsReset();
    }
  }

  /**
   * Writes `queue_reset` / `QueueReset` of queue `sel` (VIRTIO_F_RING_RESET, §2.6.1,
   * §4.1.4.3.2): 1 resets the queue alone (its engine forgets in-flight buffers, the queue is
   * disabled, `queue_size` returns to the maximum, addresses to 0, vector to NO_VECTOR) while
   * the other queues keep running; the reset completes at once, so `queue_reset` and
   * `queue_enable` then read 0 and the driver may re-enable it with a new size and new rings.
   * Rejected: `QUEUE_RESET_INVALID` (feature not negotiated, a value other than 1).
   */
  writeQueueReset(sel: number, value: number): void {
    const q = this.#sel(sel, "queue_reset");
    if (q === null) return;
    if (!hasFeature(this.#negotiated, VIRTIO_F_RING_RESET) || value !== 1) {
      this.reject(
        "QUEUE_RESET_INVALID",
        `queue_reset of queue ${sel} = ${value}` +
          (hasFeature(this.#negotiated, VIRTIO_F_RING_RESET) ? "" : " without VIRTIO_F_RING_RESET"),
      );
      return;
    }
    this.#resetQueue(q);
  }

  // --- Notifications (§2.9, §4.1.5.2, §4.2.3.3) ----------------------------------------------

  /**
   * An available buffer notification. `addressQueue` is the queue the notification address
   * selects (PCI with a non-zero `notify_off_multiplier`: the queue whose `queue_notify_off`
   * matches), or `null` when only the value identifies it (MMIO `QueueNotify`, or a multiplier of
   * 0). The value's identifier (bits 0-15) is the queue index, or `queue_notify_data` under
   * VIRTIO_F_NOTIF_CONFIG_DATA (PCI only); with VIRTIO_F_NOTIFICATION_DATA bits 16-31 carry the
   * driver's next position (§2.9), which is checked against the ring:
   * - split: `n = next_off | next_wrap << 15` must not be ahead of the ring's avail `idx`
   *   (counting from the device's `last_avail_idx`), nor more than a Queue Size away;
   * - packed: `next_off` must be below the Queue Size, and when (`next_off`, `next_wrap`) is ahead
   *   of the device's position the descriptors at the device's position and just before the
   *   claimed position must be available in their lap (§2.8.1).
   * A mismatch is recorded (`NOTIFICATION_DATA_MISMATCH`) and the notification still counts: the
   * ring is authoritative, the device never consumes beyond it. An unknown or disabled queue is
   * rejected (`NOTIFY_QUEUE_INVALID`, ignored as QEMU does).
   */
  notify(addressQueue: number | null, value: number, pciTransport = true): NotifyResult {
    const dataOn = hasFeature(this.#negotiated, VIRTIO_F_NOTIFICATION_DATA);
    const cfgData = pciTransport && hasFeature(this.#negotiated, VIRTIO_F_NOTIF_CONFIG_DATA);
    const id = (value >>> 0) & 0xffff;
    let qi: number;
    if (cfgData) {
      qi = this.#queues.findIndex((q) => q.notifyData === id);
      if (addressQueue !== null && qi !== addressQueue) qi = -1;
    } else {
      qi = id;
      if (addressQueue !== null && qi !== addressQueue) qi = -1;
    }
    const q = this.#queues[qi];
    if (q === undefined || !q.enabled || q.engine === null) {
      this.reject(
        "NOTIFY_QUEUE_INVALID",
        `notification 0x${(value >>> 0).toString(16)}${
          addressQueue !== null ? ` at queue ${addressQueue}'s address` : ""
        }: ${q === undefined ? "no such queue" : `queue ${qi} is not enabled`}`,
      );
      return { queue: null };
    }
    if (!dataOn) return { queue: qi };
    const d = decodeNotificationData(value);
    const problem = this.#checkData(q, d.nextOff, d.nextWrap);
    if (problem !== null) {
      this.reject("NOTIFICATION_DATA_MISMATCH", `queue ${qi}: ${problem}`);
      return { queue: qi, dataMatches: false };
    }
    return { queue: qi, dataMatches: true };
  }

  #read16(bus: U64, offset: number): number | null {
    try {
      const at = u64Add(bus, offset);
      if (at === null) return null;
      const gpa = translateContiguous(this.dma, at, 2, DMA_ACCESS_READ, this.#tr);
      const b = new Uint8Array(2);
      this.memory.read(gpa, b);
      return b[0] | (b[1] << 8);
    } catch {
      return null;
    }
  }

  #checkData(q: Q, nextOff: number, nextWrap: number): string | null {
    const e = q.engine!;
    const size = q.size;
    if (e.layout === "split") {
      const n = nextOff | (nextWrap << 15);
      const last = (e as unknown as { lastAvailIdx: number }).lastAvailIdx;
      const ring = this.#read16(u64FromParts(q.driver[0], q.driver[1]), 2);
      if (ring === null) return "the available ring cannot be read";
      const k = (n - last) & 0xffff;
      if (k <= size) {
        if (k > ((ring - last) & 0xffff)) {
          return `notification avail idx ${n} is ahead of the ring's avail idx ${ring} (device at ${last})`;
        }
        return null;
      }
      if (((last - n) & 0xffff) > size) {
        return `notification avail idx ${n} is more than ${size} away from the device's ${last}`;
      }
      return null; // stale: the device already went past it
    }
    if (nextOff >= size) return `next_off ${nextOff} is not below the queue size ${size}`;
    const pos = (e as unknown as { availPosition: { offset: number; wrap: number } }).availPosition;
    const lin = (o: number, w: number) => o + (w === 1 ? 0 : size);
    const k = (lin(nextOff, nextWrap) - lin(pos.offset, pos.wrap) + 2 * size) % (2 * size);
    if (k === 0 || k > size) return null; // nothing claimed, or stale
    const desc = u64FromParts(q.desc[0], q.desc[1]);
    const avail = (slot: number, wrap: number): boolean | null => {
      const f = this.#read16(desc, slot * 16 + 14);
      if (f === null) return null;
      const a = (f >>> 7) & 1;
      return a !== ((f >>> 15) & 1) && a === wrap;
    };
    const first = avail(pos.offset, pos.wrap);
    let lastSlot = nextOff - 1, lastWrap = nextWrap;
    if (lastSlot < 0) {
      lastSlot = size - 1;
      lastWrap ^= 1;
    }
    const end = avail(lastSlot, lastWrap);
    if (first === null || end === null) return "the descriptor ring cannot be read";
    if (!first || !end) {
      return `notification claims ${k} slots from ${pos.offset}/${pos.wrap} to ${nextOff}/${nextWrap}, ` +
        `but slot ${first ? lastSlot : pos.offset} is not available`;
    }
    return null;
  }

  /** True when feature `bit` was negotiated. */
  negotiatedFeature(bit: number): boolean {
    return (this.#negotiated & featureBit(bit)) !== 0n;
  }
}
