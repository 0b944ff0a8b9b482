/**
 * `createQueuePair`: a driver queue and a device queue wired over one {@link GuestMemory}, with
 * identity DMA by default. The starting point of tests, fuzz targets, benchmarks and examples.
 *
 * @module
 */

import { GuestMemory } from "../memory/guest_memory.ts";
import { IdentityAddressSpace, RawGpaDmaApi } from "../dma/identity.ts";
import type { DmaAddressSpace, DmaApi } from "../dma/types.ts";
import { alignUp } from "./split/layout.ts";
import { createDeviceQueue, createDriverQueue, driverQueueFootprint } from "./factory.ts";
import {
  featureMask,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "./features.ts";
import { VirtqError } from "./errors.ts";
import type { ChainPolicy, DeviceQueue, DriverPolicy, DriverQueue, RingLayout } from "./queue.ts";

/** Default features of {@link createQueuePair}: VERSION_1, INDIRECT_DESC and EVENT_IDX. */
export const DEFAULT_PAIR_FEATURES: bigint = featureMask(
  VIRTIO_F_VERSION_1,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_EVENT_IDX,
);

/** Options of {@link createQueuePair}; every field is optional. */
export interface QueuePairOptions {
  /** Ring layout; default `"split"`. */
  layout?: RingLayout;
  /** Queue Size in descriptors; default 256. */
  size?: number;
  /** Negotiated features (bigint mask); default {@link DEFAULT_PAIR_FEATURES}. */
  features?: bigint;
  /**
   * Bytes of guest memory to create (one region at GPA 0), rounded up to 4096; default: the
   * rings plus 1 MiB of data space. Ignored when `memory` is given.
   */
  memorySize?: number;
  /** Existing guest memory to use instead of creating one. */
  memory?: GuestMemory;
  /** The driver's DMA API; default {@link RawGpaDmaApi} (no ACCESS_PLATFORM, bus = GPA). */
  dmaApi?: DmaApi;
  /** The device's DMA view; default {@link IdentityAddressSpace}. */
  dmaSpace?: DmaAddressSpace;
  /** Device-side validation policy overrides. */
  chainPolicy?: Partial<ChainPolicy>;
  /** Driver-side policy overrides. */
  driverPolicy?: Partial<DriverPolicy>;
  /** GPA of the driver's ring memory (16-aligned); default 0. */
  ringGpa?: number;
  /**
   * The driver maps through a translating `dmaApi` although VIRTIO_F_ACCESS_PLATFORM is not
   * negotiated, as Xen guests and some pseries kernels do (platform quirks modelled by
   * `src/platform/`); default false: that combination is refused.
   */
  driverForcesDmaApi?: boolean;
}

function pairError(field: string, problem: string, fix: string): VirtqError {
  return new VirtqError(
    "PAIR_OPTIONS_INVALID",
    `createQueuePair: ${field}: ${problem} (fix: ${fix})`,
  );
}

/** The option checks of {@link createQueuePair} (cold path). */
function checkPairOptions(layout: RingLayout, features: unknown, dmaApi: DmaApi | undefined): void {
  if (typeof features !== "bigint") {
    throw pairError(
      "features",
      `${typeof features} ${String(features)} is not a bigint mask`,
      "pass a bigint, e.g. featureMask(VIRTIO_F_VERSION_1) or 1n << 32n",
    );
  }
  const packed = (features & featureMask(VIRTIO_F_RING_PACKED)) !== 0n;
  if (layout === "packed" && !packed) {
    throw pairError(
      "layout",
      '"packed" but features lack VIRTIO_F_RING_PACKED (bit 34)',
      'add featureMask(VIRTIO_F_RING_PACKED) to features, or use layout "split"',
    );
  }
  if (layout === "split" && packed) {
    throw pairError(
      "layout",
      '"split" but features have VIRTIO_F_RING_PACKED (bit 34)',
      'use layout "packed", or remove VIRTIO_F_RING_PACKED from features',
    );
  }
  const platform = (features & featureMask(VIRTIO_F_ACCESS_PLATFORM)) !== 0n;
  // the DMA modes that translate (src/dma DMA_MODE_NAMES other than "none"); test doubles with
  // other names wrap raw GPAs
  const translating = /^(direct|window|iommu|swiotlb|confidential)/;
  if (dmaApi !== undefined && translating.test(dmaApi.name) && !platform) {
    throw pairError(
      "dmaApi",
      `"${dmaApi.name}" translates addresses but features lack VIRTIO_F_ACCESS_PLATFORM (bit 33), ` +
        "so a device would use GPAs and miss the mapping",
      "add featureMask(VIRTIO_F_ACCESS_PLATFORM) to features, drop dmaApi, or set " +
        "driverForcesDmaApi for a platform whose driver maps anyway",
    );
  }
}

/** A wired driver/device pair (see {@link createQueuePair}). */
export interface QueuePair<T> {
  /** The shared guest memory. */
  readonly memory: GuestMemory;
  /** The driver side. */
  readonly driver: DriverQueue<T>;
  /** The device side, activated at the driver's ring addresses. */
  readonly device: DeviceQueue;
  /** Ring layout. */
  readonly layout: RingLayout;
  /** Queue Size. */
  readonly size: number;
  /** Negotiated features. */
  readonly features: bigint;
  /** GPA of the ring memory. */
  readonly ringGpa: number;
  /** Bytes of ring memory (from `driverQueueFootprint`). */
  readonly ringBytes: number;
  /** First GPA after the ring memory: where buffers can go. */
  readonly dataGpa: number;
}

/**
 * Creates a driver queue and a device queue over one guest memory.
 * @param opts see {@link QueuePairOptions}.
 * @returns the pair; the device uses the driver's `addresses`.
 * @throws VirtqError `PAIR_OPTIONS_INVALID` when `features` is not a bigint, `layout` and
 * `VIRTIO_F_RING_PACKED` disagree, or a translating `dmaApi` comes without
 * `VIRTIO_F_ACCESS_PLATFORM`; `VirtqError` from either constructor
 * (`QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`, `DMA_MAP_FAILED`); RangeError for
 * an invalid size or memory size.
 */
export function createQueuePair<T = unknown>(opts: QueuePairOptions = {}): QueuePair<T> {
  const layout = opts.layout ?? "split";
  const size = opts.size ?? 256;
  const features = opts.features ??
    (layout === "packed"
      ? DEFAULT_PAIR_FEATURES | featureMask(VIRTIO_F_RING_PACKED)
      : DEFAULT_PAIR_FEATURES);
  checkPairOptions(layout, features, opts.driverForcesDmaApi ? undefined : opts.dmaApi);
  const ringGpa = opts.ringGpa ?? 0;
  const ringBytes = driverQueueFootprint(layout, size, features);
  const memory = opts.memory ??
    GuestMemory.flat(alignUp(opts.memorySize ?? ringGpa + ringBytes + (1 << 20), 4096));
  const driver = createDriverQueue<T>(layout, {
    memory,
    dma: opts.dmaApi ?? new RawGpaDmaApi(),
    size,
    features,
    ringGpa,
    policy: opts.driverPolicy,
  });
  const device = createDeviceQueue(layout, {
    memory,
    dma: opts.dmaSpace ?? new IdentityAddressSpace(),
    size,
    addresses: driver.addresses,
    features,
    policy: opts.chainPolicy,
  });
  return {
    memory,
    driver,
    device,
    layout,
    size,
    features,
    ringGpa,
    ringBytes,
    dataGpa: ringGpa + ringBytes,
  };
}
