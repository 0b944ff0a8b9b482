/**
 * A loopback device over any {@link DeviceQueue}: every chain's device-readable bytes are copied
 * into its device-writable segments and the chain is used with the number of bytes written.
 * Used by benchmarks, fuzz targets and examples.
 *
 * @module
 */

import type { DeviceQueue } from "../virtio/queue.ts";
import { isVirtqError, type VirtqError } from "../virtio/errors.ts";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
} from "../virtio/status.ts";

/** Device status of a live device: ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK (= 15). */
export const LOOPBACK_LIVE_STATUS: number = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;

/**
 * Loopback device: readable bytes in, the same bytes out (`Chain.copyReadableToWritable`),
 * used `len` = `min(readable bytes, writable bytes)`.
 *
 * Status (spec §2.1): consumes buffers only while `DRIVER_OK` is set and `DEVICE_NEEDS_RESET`
 * is clear. When the queue breaks (a hostile driver), `process` sets `DEVICE_NEEDS_RESET`,
 * sends a device configuration change notification (§2.1.2, counted in
 * {@link LoopbackDevice.configChangeNotifications}, `onConfigChange` called), keeps the error in
 * {@link LoopbackDevice.error}, publishes what it already completed and stops; it does not throw.
 */
export class LoopbackDevice {
  /** The queue served. */
  readonly queue: DeviceQueue;
  /** Device status bits (spec §2.1), default {@link LOOPBACK_LIVE_STATUS}. */
  status: number;
  /** The error that broke the queue, or `null`. */
  error: VirtqError | null = null;
  /** Chains completed since creation (or the last reset). */
  completed = 0;
  /** Used buffer notifications the device decided to send. */
  notifications = 0;
  /** Bytes written into writable buffers since creation (or the last reset). */
  bytesWritten = 0;
  /**
   * Device configuration change notifications sent (spec §2.1.2: setting `DEVICE_NEEDS_RESET`
   * while `DRIVER_OK` is set requires one), since creation (or the last reset).
   */
  configChangeNotifications = 0;
  /** Called for each device configuration change notification (e.g. to raise the interrupt). */
  onConfigChange: (() => void) | undefined;

  /**
   * Creates a loopback device serving `queue`.
   * @param queue the device queue to serve (already activated).
   * @param status initial device status, default {@link LOOPBACK_LIVE_STATUS}.
   * @param onConfigChange optional {@link LoopbackDevice.onConfigChange}.
   */
  constructor(
    queue: DeviceQueue,
    status = LOOPBACK_LIVE_STATUS,
    onConfigChange?: () => void,
  ) {
    this.queue = queue;
    this.status = status;
    this.onConfigChange = onConfigChange;
  }

  /** True when the device may consume buffers (DRIVER_OK set, NEEDS_RESET clear). */
  get live(): boolean {
    return (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 &&
      (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) === 0;
  }

  /**
   * Pops up to `max` chains, loops each back, pushes and flushes once.
   * @param max most chains to process, default unlimited (bounded by what is available).
   * @returns chains completed by this call.
   * @throws only non-virtqueue errors (a `MemoryFault` means memory changed under a chain).
   */
  process(max = Infinity): number {
    // §2.1.2 / §4.1.4.3.2: nothing is processed after a reset until the queue is re-enabled.
    if (!this.live || !this.queue.ready) return 0;
    const q = this.queue;
    let n = 0;
    try {
      while (n < max) {
        const chain = q.pop();
        if (chain === null) break;
        const written = chain.copyReadableToWritable();
        q.push(chain, written);
        this.bytesWritten += written;
        n++;
      }
    } catch (e) {
      if (!isVirtqError(e)) throw e;
      this.error = e;
      // §2.1.2: unrecoverable error -> DEVICE_NEEDS_RESET, and with DRIVER_OK set the device
      // MUST send a device configuration change notification.
      this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
      if ((this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0) {
        this.configChangeNotifications++;
        this.onConfigChange?.();
      }
    } finally {
      if (n > 0 && q.flush()) this.notifications++;
    }
    this.completed += n;
    return n;
  }

  /**
   * Device reset: resets the queue, clears the error and counters, restores `status`. The queue
   * is left not ready (spec §2.1.2): `process` consumes nothing until {@link LoopbackDevice.activate}.
   */
  reset(status = LOOPBACK_LIVE_STATUS): void {
    this.queue.reset();
    this.status = status;
    this.error = null;
    this.completed = 0;
    this.notifications = 0;
    this.bytesWritten = 0;
    this.configChangeNotifications = 0;
  }

  /**
   * Re-enables the queue after {@link LoopbackDevice.reset}, once the driver has re-initialised
   * its rings (spec §4.1.4.3.2): {@link DeviceQueue.activate}.
   * @throws VirtqError `QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`.
   */
  activate(): void {
    this.queue.activate();
  }
}
