/**
 * virtio-mmio register block (spec §4.2.2, version 2) as a register front-end over a
 * {@link TransportDevice}.
 *
 * @module
 */

import {
  type RegisterField,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_REGISTERS,
  VIRTIO_MMIO_VERSION,
} from "./constants.ts";
import type { NotifyResult, TransportDevice } from "./device.ts";

const BY_OFFSET = new Map<number, RegisterField>(VIRTIO_MMIO_REGISTERS.map((f) => [f.offset, f]));

/**
 * The registers of one virtio-mmio device (§4.2.2). Every register is 32 bits wide and aligned
 * (§4.2.2.2 "the driver MUST only use 32 bit wide and aligned reads and writes" for the
 * registers); the configuration space from 0x100 allows narrower accesses. A read of a
 * write-only register, a write to a read-only one, an unknown offset or a wrong width is
 * rejected with `REGISTER_ACCESS_INVALID` (reads return 0). Never throws on guest input.
 */
export class VirtioMmioRegisters {
  /** The device model behind the registers. */
  readonly device: TransportDevice;
  /** `DeviceID` (§5 device types). */
  readonly deviceId: number;
  /** `VendorID`. */
  readonly vendorId: number;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #queueSel = 0;

  /**
   * Creates the MMIO register block of `device`.
   * @param device the device model.
   * @param deviceId virtio device ID (e.g. 1 net, 2 block).
   * @param vendorId vendor ID (default 0x554d4551, "QEMU", as QEMU reports).
   */
  constructor(device: TransportDevice, deviceId: number, vendorId = 0x554d4551) {
    this.device = device;
    this.deviceId = deviceId >>> 0;
    this.vendorId = vendorId >>> 0;
  }

  /** `QueueSel` as last written. */
  get queueSelect(): number {
    return this.#queueSel;
  }

  #field(offset: number, width: number, write: boolean): RegisterField | null {
    const f = BY_OFFSET.get(offset);
    let why = "";
    if (f === undefined) why = " (no register there)";
    else if (width !== 4) why = ` (${f.name} is 32-bit)`;
    else if (write && f.access === "ro") why = ` (${f.name} is read-only)`;
    else if (!write && f.access === "wo") why = ` (${f.name} is write-only)`;
    if (why === "") return f!;
    this.device.reject(
      "REGISTER_ACCESS_INVALID",
      `MMIO ${write ? "write" : "read"} of ${width} bytes at 0x${offset.toString(16)}${why}`,
    );
    return null;
  }

  /**
   * Reads a register (or configuration space bytes at 0x100 and above, little-endian).
   * @returns the value, 0 for a rejected access.
   */
  read(offset: number, width: 1 | 2 | 4 = 4): number {
    const d = this.device;
    if (offset >= VIRTIO_MMIO_CONFIG) {
      const o = offset - VIRTIO_MMIO_CONFIG;
      if (o + width > d.config.length) {
        d.reject("REGISTER_ACCESS_INVALID", `config read ${o}+${width} beyond ${d.config.length}`);
        return 0;
      }
      let v = 0;
      for (let i = width - 1; i >= 0; i--) v = v * 256 + d.config[o + i];
      return v;
    }
    const f = this.#field(offset, width, false);
    if (f === null) return 0;
    const q = d.queue(this.#queueSel);
    switch (f.name) {
      case "MagicValue":
        return VIRTIO_MMIO_MAGIC;
      case "Version":
        return VIRTIO_MMIO_VERSION;
      case "DeviceID":
        return this.deviceId;
      case "VendorID":
        return this.vendorId;
      case "DeviceFeatures":
        return d.deviceFeatureWindow(this.#deviceFeaturesSel);
      case "QueueNumMax":
        return q?.sizeMax ?? 0; // §4.2.2: 0 = the queue is not available
      case "QueueReady":
        return q?.enabled ? 1 : 0;
      case "InterruptStatus":
        return d.interruptStatus;
      case "Status":
        return d.status;
      case "SHMLenLow":
      case "SHMLenHigh":
      case "SHMBaseLow":
      case "SHMBaseHigh":
        return 0xffff_ffff; // §4.2.2: no shared memory region: length and base read -1
      case "QueueReset":
        return 0; // the reset completes at once
      case "ConfigGeneration":
        return d.configGeneration >>> 0;
      default:
        return 0;
    }
  }

  /** Writes a register (configuration space writes are accepted and ignored by this model). */
  write(offset: number, value: number, width: 1 | 2 | 4 = 4): NotifyResult | undefined {
    const d = this.device;
    if (offset >= VIRTIO_MMIO_CONFIG) {
      if (offset - VIRTIO_MMIO_CONFIG + width > d.config.length) {
        d.reject(
          "REGISTER_ACCESS_INVALID",
          `config write at 0x${offset.toString(16)} beyond the space`,
        );
      }
      return undefined;
    }
    const f = this.#field(offset, width, true);
    if (f === null) return undefined;
    const v = value >>> 0;
    const sel = this.#queueSel;
    switch (f.name) {
      case "DeviceFeaturesSel":
        this.#deviceFeaturesSel = v;
        break;
      case "DriverFeatures":
        d.writeDriverFeatures(this.#driverFeaturesSel, v);
        break;
      case "DriverFeaturesSel":
        this.#driverFeaturesSel = v;
        break;
      case "QueueSel":
        this.#queueSel = v;
        break;
      case "QueueNum":
        d.writeQueueSize(sel, v);
        break;
      case "QueueReady":
        d.writeQueueEnable(sel, v, "mmio");
        break;
      case "QueueNotify":
        return d.notify(null, v, false);
      case "InterruptACK":
        d.ackInterrupt(v);
        break;
      case "Status":
        d.writeStatus(v);
        if ((v & 0xff) === 0) {
          this.#deviceFeaturesSel = 0;
          this.#driverFeaturesSel = 0;
          this.#queueSel = 0;
        }
        break;
      case "QueueDescLow":
      case "QueueDescHigh":
        d.writeQueueAddress(sel, "desc", f.name.endsWith("High"), v);
        break;
      case "QueueDriverLow":
      case "QueueDriverHigh":
        d.writeQueueAddress(sel, "driver", f.name.endsWith("High"), v);
        break;
      case "QueueDeviceLow":
      case "QueueDeviceHigh":
        d.writeQueueAddress(sel, "device", f.name.endsWith("High"), v);
        break;
      case "QueueReset":
        d.writeQueueReset(sel, v);
        break;
      case "SHMSel":
        break;
    }
    return undefined;
  }
}
