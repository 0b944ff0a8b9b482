import { assertEquals } from "@std/assert";
import {
  createQueuePair,
  featureMask,
  LOOPBACK_LIVE_STATUS,
  LoopbackDevice,
  SgList,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";

Deno.test("loopback: consumes only while DRIVER_OK, copies bytes, reports min(readable, writable)", () => {
  const p = createQueuePair<number>({ size: 8, features: featureMask(VIRTIO_F_VERSION_1) });
  const d = p.dataGpa;
  p.memory.write(d, new Uint8Array([1, 2, 3, 4, 5, 6]));
  p.driver.add(SgList.of([d, 6]), SgList.of([d + 64, 4]), 1);
  p.driver.kick();
  const dev = new LoopbackDevice(p.device, LOOPBACK_LIVE_STATUS & ~VIRTIO_CONFIG_S_DRIVER_OK);
  assertEquals(dev.process(), 0); // §2.1: nothing before DRIVER_OK
  assertEquals(p.device.inFlight, 0);
  dev.status |= VIRTIO_CONFIG_S_DRIVER_OK;
  assertEquals(dev.process(), 1);
  assertEquals([dev.completed, dev.bytesWritten, dev.notifications], [1, 4, 1]);
  assertEquals(p.driver.getUsed(), 1);
  assertEquals(p.driver.usedLen, 4);
  const out = new Uint8Array(4);
  p.memory.read(d + 64, out);
  assertEquals([...out], [1, 2, 3, 4]);
});

Deno.test("loopback: a hostile driver sets DEVICE_NEEDS_RESET; completed chains stay published", () => {
  const p = createQueuePair<number>({ size: 8, features: featureMask(VIRTIO_F_VERSION_1) });
  const d = p.dataGpa;
  p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 1);
  p.driver.kick();
  // Then the driver (hostile) publishes an avail entry naming head 9 >= queue size.
  const avail = p.ringGpa + 16 * 8;
  p.memory.writeU16(avail + 4 + 2, 9);
  p.memory.writeU16(avail + 2, 2);
  const dev = new LoopbackDevice(p.device);
  assertEquals(dev.process(), 1);
  assertEquals(dev.error?.code, "AVAIL_HEAD_OUT_OF_RANGE");
  assertEquals(dev.status & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
  assertEquals(dev.live, false);
  assertEquals(dev.process(), 0);
  assertEquals(p.driver.getUsed(), 1); // the first chain was completed and published
  dev.reset();
  assertEquals([dev.status, dev.error, p.device.broken], [LOOPBACK_LIVE_STATUS, null, null]);
});

Deno.test("loopback: NEEDS_RESET with DRIVER_OK sends a configuration change notification (§2.1.2)", () => {
  const p = createQueuePair<number>({ size: 8, features: featureMask(VIRTIO_F_VERSION_1) });
  const avail = p.ringGpa + 16 * 8;
  p.memory.writeU16(avail + 4, 9); // head 9 >= queue size
  p.memory.writeU16(avail + 2, 1);
  let calls = 0;
  const dev = new LoopbackDevice(p.device, LOOPBACK_LIVE_STATUS, () => calls++);
  assertEquals(dev.process(), 0);
  assertEquals(dev.error?.code, "AVAIL_HEAD_OUT_OF_RANGE");
  assertEquals([dev.configChangeNotifications, calls], [1, 1]);
  assertEquals(dev.process(), 0); // stopped: no second notification
  assertEquals([dev.configChangeNotifications, calls], [1, 1]);
  dev.reset();
  assertEquals(dev.configChangeNotifications, 0);
});
