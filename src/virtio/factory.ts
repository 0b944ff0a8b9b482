/**
 * Layout-independent constructors: create a driver or device queue of either ring layout by a
 * parameter, so tests, fuzz targets and benchmarks run on split (§2.7) and packed (§2.8) alike.
 *
 * @module
 */

import type {
  DeviceQueue,
  DeviceQueueOptions,
  DriverQueue,
  DriverQueueOptions,
  RingLayout,
} from "./queue.ts";
import { SplitDeviceQueue } from "./split/device.ts";
import { splitDriverFootprint, SplitDriverQueue } from "./split/driver.ts";
import { PackedDeviceQueue } from "./packed/device.ts";
import { PackedDriverQueue, packedDriverQueueFootprint } from "./packed/driver.ts";

function unsupported(layout: string): never {
  throw new Error(
    `unknown ring layout "${layout}" (expected "split" or "packed")`,
  );
}

/**
 * Creates the driver side of a queue.
 * @param layout `"split"` (spec §2.7) or `"packed"` (§2.8).
 * @param opts memory, DMA API, Queue Size, features, ring GPA, policy.
 * @throws the layout's own construction errors
 * (`VirtqError` `QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`, `DMA_MAP_FAILED`).
 */
export function createDriverQueue<T>(layout: RingLayout, opts: DriverQueueOptions): DriverQueue<T> {
  switch (layout) {
    case "split":
      return new SplitDriverQueue<T>(opts);
    case "packed":
      return new PackedDriverQueue<T>(opts);
    default:
      return unsupported(layout);
  }
}

/**
 * Creates (activates) the device side of a queue.
 * @param layout `"split"` (spec §2.7) or `"packed"` (§2.8).
 * @param opts memory, DMA view, Queue Size, ring addresses, features, policy.
 * @throws `VirtqError` `QUEUE_SIZE_INVALID`,
 * `RING_MISALIGNED`, `RING_UNMAPPED` on a bad configuration.
 */
export function createDeviceQueue(layout: RingLayout, opts: DeviceQueueOptions): DeviceQueue {
  switch (layout) {
    case "split":
      return new SplitDeviceQueue(opts);
    case "packed":
      return new PackedDeviceQueue(opts);
    default:
      return unsupported(layout);
  }
}

/**
 * Bytes of page-aligned guest memory the driver queue of `layout` needs at its `ringGpa`
 * (ring areas and indirect-table arena), a multiple of 4096.
 * @param layout ring layout.
 * @param size Queue Size in descriptors.
 * @param features negotiated features (bigint mask).
 * @throws RangeError for an invalid size.
 */
export function driverQueueFootprint(layout: RingLayout, size: number, features: bigint): number {
  switch (layout) {
    case "split":
      return splitDriverFootprint(size, features);
    case "packed":
      return packedDriverQueueFootprint(size, features);
    default:
      return unsupported(layout);
  }
}
