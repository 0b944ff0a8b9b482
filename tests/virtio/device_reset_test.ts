import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  createQueuePair,
  featureMask,
  type RingLayout,
  SgList,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtqError,
} from "../../src/mod.ts";

/** VIRTIO_F_RING_PACKED for the packed layout (createQueuePair refuses a mismatch). */
const ringPacked = (l: RingLayout) => l === "packed" ? featureMask(VIRTIO_F_RING_PACKED) : 0n;

/** The driver-side rings can be re-initialised (both layouts implement `resetRings`). */
type Resettable = { resetRings(): void; detachUnused(): number | undefined };

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`${layout} device: reset leaves the queue not ready; stale heads are not consumed (#5, #37)`, () => {
    const p = createQueuePair<number>({
      layout,
      size: 8,
      features: featureMask(VIRTIO_F_VERSION_1) | ringPacked(layout),
    });
    const d = p.dataGpa;
    p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 0);
    p.driver.add(SgList.of([d + 128, 8]), SgList.of([d + 192, 8]), 1);
    p.driver.kick();
    for (let i = 0; i < 2; i++) {
      const c = p.device.pop()!;
      p.device.push(c, c.copyReadableToWritable());
    }
    p.device.flush();
    assertEquals([p.driver.getUsed(), p.driver.getUsed()], [0, 1]);
    assert(p.device.ready);

    p.device.reset();
    assertEquals(p.device.ready, false);
    // §2.1.2 / §4.1.4.3.2: no processing until re-enabled; the old entries (heads 0 and 1) are
    // still in guest memory and must not be consumed again.
    const e = assertThrows(() => p.device.pop(), VirtqError);
    assertEquals([e.code, e.side], ["QUEUE_NOT_READY", "api"]);
    assertEquals(p.device.broken, null); // an api error breaks nothing
    assertEquals(p.device.inFlight, 0);
    assertEquals(p.device.setNotifications(true), false); // touches nothing while not ready
    assertEquals(p.device.flush(), false);
    assertEquals(assertThrows(() => p.device.pop(), VirtqError).code, "QUEUE_NOT_READY");
  });

  Deno.test(`${layout} device: activate() after reset serves freshly initialised rings`, () => {
    const p = createQueuePair<number>({
      layout,
      size: 8,
      features: featureMask(VIRTIO_F_VERSION_1) | ringPacked(layout),
    });
    const drv = p.driver as unknown as Resettable;
    const d = p.dataGpa;
    p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 0);
    p.driver.add(SgList.of([d + 128, 8]), SgList.of([d + 192, 8]), 1);
    p.driver.kick();
    const c0 = p.device.pop()!;
    p.device.push(c0, 0);
    p.device.flush();
    assertEquals(p.driver.getUsed(), 0);
    p.device.reset();
    assertEquals(drv.detachUnused(), 1);
    assertEquals(drv.detachUnused(), undefined);
    drv.resetRings();
    p.device.activate();
    assert(p.device.ready);
    assertEquals(p.device.pop(), null); // zeroed rings: nothing available
    p.memory.write(d, new Uint8Array([9, 8, 7, 6]));
    p.driver.add(SgList.of([d, 4]), SgList.of([d + 64, 8]), 7);
    p.driver.kick();
    const c = p.device.pop()!;
    assertEquals(c.id, 0);
    p.device.push(c, c.copyReadableToWritable());
    p.device.flush();
    assertEquals([p.driver.getUsed(), p.driver.usedLen], [7, 4]);
    const out = new Uint8Array(4);
    p.memory.read(d + 64, out);
    assertEquals([...out], [9, 8, 7, 6]);
    assertEquals(p.device.pop(), null);
  });
}
