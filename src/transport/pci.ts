/**
 * virtio-pci modern common configuration structure (spec §4.1.4.3) and notification region
 * (§4.1.4.4, §4.1.5.2) as a register front-end over a {@link TransportDevice}: the guest's MMIO
 * accesses to the capability regions become `read` / `write` / `notify` calls.
 *
 * @module
 */

import { type RegisterField, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_COMMON_CFG } from "./constants.ts";
import type { NotifyResult, QueueArea, TransportDevice } from "./device.ts";
import { VIRTIO_F_NOTIFICATION_DATA } from "../virtio/mod.ts";

const BY_OFFSET = new Map<number, RegisterField>(VIRTIO_PCI_COMMON_CFG.map((f) => [f.offset, f]));

/**
 * The common configuration registers of one virtio-pci modern device.
 *
 * Accesses follow §4.1.3.1: each field with its natural width, 64-bit fields also as two 32-bit
 * halves. Any other access (unknown offset, wrong width, a write to a read-only field) is
 * rejected with `REGISTER_ACCESS_INVALID`: reads return 0, writes change nothing. Never throws
 * on guest input.
 */
export class VirtioPciCommonCfg {
  /** The device model behind the registers. */
  readonly device: TransportDevice;
  /** `notify_off_multiplier` of the notification capability (§4.1.4.4); 0 = one address. */
  readonly notifyOffMultiplier: number;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #queueSelect = 0;

  /**
   * Creates the common configuration front-end of `device`.
   * @param device the device model.
   * @param notifyOffMultiplier bytes between queue notification addresses (default 4; the spec
   * requires an even number, or 0).
   * @throws RangeError for an odd or negative multiplier (model configuration error).
   */
  constructor(device: TransportDevice, notifyOffMultiplier = 4) {
    if (
      !(Number.isInteger(notifyOffMultiplier) && notifyOffMultiplier >= 0) ||
      notifyOffMultiplier % 2 !== 0
    ) {
      throw new RangeError(
        `notify_off_multiplier ${notifyOffMultiplier} must be an even number >= 0`,
      );
    }
    this.device = device;
    this.notifyOffMultiplier = notifyOffMultiplier;
  }

  /** `queue_select` as last written. */
  get queueSelect(): number {
    return this.#queueSelect;
  }

  #field(offset: number, width: number, write: boolean): { f: RegisterField; hi: boolean } | null {
    let f = BY_OFFSET.get(offset);
    let hi = false;
    if (f === undefined) {
      const lo = BY_OFFSET.get(offset - 4);
      if (lo !== undefined && lo.width === 8) {
        f = lo;
        hi = true;
      }
    }
    const ok = f !== undefined && (f.width === width || (f.width === 8 && width === 4)) &&
      !(hi && width !== 4);
    if (!ok) {
      this.device.reject(
        "REGISTER_ACCESS_INVALID",
        `common cfg ${write ? "write" : "read"} of ${width} bytes at 0x${offset.toString(16)}` +
          (f === undefined ? " (no field there)" : ` (${f.name} is ${f.width} bytes)`),
      );
      return null;
    }
    if (write && f!.access === "ro") {
      this.device.reject("REGISTER_ACCESS_INVALID", `write to read-only ${f!.name}`);
      return null;
    }
    return { f: f!, hi };
  }

  /**
   * Reads a field (width 1, 2 or 4; a 64-bit field as its 32-bit halves, see {@link read64}).
   * @returns the value, 0 for a rejected access.
   */
  read(offset: number, width: 1 | 2 | 4): number {
    const r = this.#field(offset, width, false);
    if (r === null) return 0;
    const d = this.device;
    const sel = this.#queueSelect;
    const q = d.queue(sel);
    switch (r.f.name) {
      case "device_feature_select":
        return this.#deviceFeatureSelect;
      case "device_feature":
        return d.deviceFeatureWindow(this.#deviceFeatureSelect);
      case "driver_feature_select":
        return this.#driverFeatureSelect;
      case "driver_feature":
        return d.driverFeatureWindow(this.#driverFeatureSelect);
      case "config_msix_vector":
        return d.msixConfig;
      case "num_queues":
        return d.numQueues;
      case "device_status":
        return d.status;
      case "config_generation":
        return d.configGeneration & 0xff;
      case "queue_select":
        return sel;
      // Queue registers of a queue that does not exist read 0 (§4.1.4.3: size 0 = unavailable).
      case "queue_size":
        return q?.size ?? 0;
      case "queue_msix_vector":
        return q?.msixVector ?? VIRTIO_MSI_NO_VECTOR;
      case "queue_enable":
        return q?.enabled ? 1 : 0;
      case "queue_notify_off":
        return q?.notifyOff ?? 0;
      case "queue_desc":
      case "queue_driver":
      case "queue_device": {
        if (q === undefined) return 0;
        const v = r.f.name === "queue_desc"
          ? q.descAddr
          : r.f.name === "queue_driver"
          ? q.driverAddr
          : q.deviceAddr;
        return Number(r.hi ? v >> 32n : v & 0xffff_ffffn);
      }
      case "queue_notify_data":
        return q?.notifyData ?? 0;
      case "queue_reset":
        return 0; // the reset completes at once (§4.1.4.3.2: 0 once the reset is complete)
      default:
        return 0; // admin_queue_index / admin_queue_num: no admin virtqueue (VIRTIO_F_ADMIN_VQ)
    }
  }

  /** Reads a 64-bit field in one access (§4.1.3.1). Returns 0n for a rejected access. */
  read64(offset: number): bigint {
    const f = BY_OFFSET.get(offset);
    if (f === undefined || f.width !== 8) {
      this.device.reject("REGISTER_ACCESS_INVALID", `64-bit read at 0x${offset.toString(16)}`);
      return 0n;
    }
    return BigInt(this.read(offset, 4)) | (BigInt(this.read(offset + 4, 4)) << 32n);
  }

  /** Writes a 64-bit field in one access (§4.1.3.1). */
  write64(offset: number, value: bigint): void {
    const f = BY_OFFSET.get(offset);
    if (f === undefined || f.width !== 8) {
      this.device.reject("REGISTER_ACCESS_INVALID", `64-bit write at 0x${offset.toString(16)}`);
      return;
    }
    const v = BigInt.asUintN(64, value);
    this.write(offset, 4, Number(v & 0xffff_ffffn));
    this.write(offset + 4, 4, Number(v >> 32n));
  }

  /**
   * Writes a field (width 1, 2 or 4). Forbidden writes are rejected as {@link TransportDevice}
   * documents per register; nothing throws.
   */
  write(offset: number, width: 1 | 2 | 4, value: number): void {
    const r = this.#field(offset, width, true);
    if (r === null) return;
    const d = this.device;
    const v = width === 4 ? value >>> 0 : width === 2 ? value & 0xffff : value & 0xff;
    const sel = this.#queueSelect;
    switch (r.f.name) {
      case "device_feature_select":
        this.#deviceFeatureSelect = v;
        return;
      case "driver_feature_select":
        this.#driverFeatureSelect = v;
        return;
      case "driver_feature":
        d.writeDriverFeatures(this.#driverFeatureSelect, v);
        return;
      case "config_msix_vector":
        d.writeMsixConfig(v);
        return;
      case "device_status":
        d.writeStatus(v);
        if (v === 0) {
          this.#deviceFeatureSelect = 0;
          this.#driverFeatureSelect = 0;
          this.#queueSelect = 0;
        }
        return;
      case "queue_select":
        this.#queueSelect = v;
        return;
      case "queue_size":
        d.writeQueueSize(sel, v);
        return;
      case "queue_msix_vector":
        d.writeQueueMsixVector(sel, v);
        return;
      case "queue_enable":
        d.writeQueueEnable(sel, v, "pci");
        return;
      case "queue_desc":
      case "queue_driver":
      case "queue_device":
        d.writeQueueAddress(sel, r.f.name.slice(6) as QueueArea, r.hi, v);
        return;
      case "queue_reset":
        d.writeQueueReset(sel, v);
        return;
    }
  }

  /**
   * The notification address of queue `i` as an offset into the notification region:
   * `queue_notify_off × notify_off_multiplier` (§4.1.4.4), or `undefined` for no such queue.
   */
  notifyAddress(i: number): number | undefined {
    const q = this.device.queue(i);
    return q === undefined ? undefined : q.notifyOff * this.notifyOffMultiplier;
  }

  /**
   * A driver write of `value` (`width` 2: queue identifier; 4: notification data, §2.9) at
   * `offset` in the notification region (§4.1.5.2). With a non-zero multiplier the address
   * selects the queue (an address no queue uses is rejected, `NOTIFY_QUEUE_INVALID`); a width
   * that does not match VIRTIO_F_NOTIFICATION_DATA is `REGISTER_ACCESS_INVALID`.
   */
  notify(offset: number, width: 2 | 4, value: number): NotifyResult {
    const d = this.device;
    const dataOn = d.negotiatedFeature(VIRTIO_F_NOTIFICATION_DATA);
    if (width !== (dataOn ? 4 : 2)) {
      d.reject(
        "REGISTER_ACCESS_INVALID",
        `notification of ${width} bytes; expected ${dataOn ? 4 : 2} (VIRTIO_F_NOTIFICATION_DATA ${
          dataOn ? "on" : "off"
        })`,
      );
      return { queue: null };
    }
    let addressQueue: number | null = null;
    if (this.notifyOffMultiplier !== 0) {
      for (let i = 0; i < d.numQueues; i++) {
        if (d.queue(i)!.notifyOff * this.notifyOffMultiplier === offset) {
          addressQueue = i;
          break;
        }
      }
      if (addressQueue === null) {
        d.reject(
          "NOTIFY_QUEUE_INVALID",
          `notification at offset 0x${offset.toString(16)}: no queue there`,
        );
        return { queue: null };
      }
    } else if (offset !== 0) {
      d.reject(
        "NOTIFY_QUEUE_INVALID",
        `notification at offset ${offset} with notify_off_multiplier 0`,
      );
      return { queue: null };
    }
    return d.notify(addressQueue, value, true);
  }
}
