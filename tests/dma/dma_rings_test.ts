/**
 * Rings over every DMA mode: split and packed round trips with the driver's DmaApi and the
 * device's DmaAddressSpace of each mode (ring memory itself goes through the device's view).
 * Uses `createQueuePair` where the factory implements the layout, else the layout's classes.
 */
import { assertEquals } from "@std/assert";
import {
  createDmaLab,
  createQueuePair,
  type DeviceQueue,
  DMA_MODE_NAMES,
  type DmaModeName,
  type DriverQueue,
  driverQueueFootprint,
  FakeClock,
  featureMask,
  LoopbackDevice,
  PackedDeviceQueue,
  PackedDriverQueue,
  type RingLayout,
  SgList,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";

const LAYOUTS: RingLayout[] = ["split", "packed"];

/** Whether the queue factory implements `layout` yet (packed is wired separately). */
function implemented(layout: RingLayout): boolean {
  try {
    driverQueueFootprint(layout, 16, featureMask(VIRTIO_F_VERSION_1));
    return true;
  } catch {
    return false;
  }
}

function roundTrips(layout: RingLayout, name: DmaModeName): void {
  const clock = new FakeClock();
  const lab = createDmaLab(name, { clock, poolSize: 1 << 20, fqSize: 8 });
  const { mode, memory } = lab;
  const features = featureMask(
    VIRTIO_F_VERSION_1,
    VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_EVENT_IDX,
    ...(name === "none" ? [] : [VIRTIO_F_ACCESS_PLATFORM]),
    ...(layout === "packed" ? [VIRTIO_F_RING_PACKED] : []),
  );
  let p: { driver: DriverQueue<number>; device: DeviceQueue };
  if (implemented(layout)) {
    p = createQueuePair<number>({
      layout,
      size: 16,
      features,
      memory,
      dmaApi: mode.api,
      dmaSpace: mode.space,
      ringGpa: lab.ringGpa,
      driverPolicy: { indirect: "auto" },
    });
  } else {
    const driver = new PackedDriverQueue<number>({
      memory,
      dma: mode.api,
      size: 16,
      features,
      ringGpa: lab.ringGpa,
      policy: { indirect: "auto" },
    });
    const device = new PackedDeviceQueue({
      memory,
      dma: mode.space,
      size: 16,
      addresses: driver.addresses,
      features,
    });
    p = { driver, device };
  }
  const dev = new LoopbackDevice(p.device);
  const inLen = 700, outLen = 5000;
  for (let round = 0; round < 40; round++) {
    const src = 0x1_0000 + (round % 8) * 0x4000 + 0x7f0; // crosses a page boundary
    const dst = 0x40_0000 + (round % 8) * 0x4000 + 0x10;
    const data = new Uint8Array(outLen);
    for (let i = 0; i < outLen; i++) data[i] = (round * 31 + i * 7) & 0xff;
    memory.write(src, data);
    memory.fill(dst, outLen, 0);
    p.driver.add(
      SgList.of([src, inLen], [src + inLen, outLen - inLen]),
      SgList.of([dst, 3000], [dst + 3000, outLen - 3000]),
      round,
    );
    p.driver.kick();
    assertEquals(dev.process(), 1, `round ${round}: ${dev.error?.message ?? ""}`);
    assertEquals(p.driver.getUsed(), round);
    assertEquals(p.driver.usedLen, outLen);
    assertEquals(memory.view(dst, outLen), data);
    if (round % 10 === 9) {
      clock.advance(11);
      mode.tick();
    }
  }
  assertEquals(dev.error, null);
  if (mode.iommu !== null && mode.domain?.kind === "paged") {
    // the device really went through the IOMMU
    assertEquals(mode.iommu.iotlb.stats.hits + mode.iommu.iotlb.stats.misses > 0, true);
  }
  if (mode.swiotlb !== null) {
    assertEquals(mode.swiotlb.stats.bounced > 0, true);
    assertEquals(mode.swiotlb.usedSlots, 0); // every bounce slot returned
  }
}

for (const layout of LAYOUTS) {
  for (const name of DMA_MODE_NAMES) {
    Deno.test(`rings over DMA: ${layout} over ${name}`, () => roundTrips(layout, name));
  }
}
