import { assertEquals } from "@std/assert";
import {
  createQueuePair,
  featureMask,
  type RingLayout,
  SgList,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";

/** VIRTIO_F_RING_PACKED for the packed layout (createQueuePair refuses a mismatch). */
const ringPacked = (l: RingLayout) => l === "packed" ? featureMask(VIRTIO_F_RING_PACKED) : 0n;

for (const layout of ["split", "packed"] as RingLayout[]) {
  for (const eventIdx of [false, true]) {
    const name = `${layout}${eventIdx ? " EVENT_IDX" : ""}`;
    Deno.test(`${name} device: setNotifications(true) reports buffers added while off`, () => {
      const features = (eventIdx
        ? featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX)
        : featureMask(VIRTIO_F_VERSION_1)) | ringPacked(layout);
      const p = createQueuePair<number>({ layout, size: 8, features });
      const d = p.dataGpa;
      assertEquals(p.device.setNotifications(false), false);
      assertEquals(p.device.setNotifications(true), false); // nothing available
      assertEquals(p.device.setNotifications(false), false);
      // The driver adds while notifications are off (and would not notify).
      p.driver.add(SgList.of([d, 8]), SgList.of([d + 64, 8]), 1);
      p.driver.kick();
      assertEquals(p.device.setNotifications(false), false); // disabling never reports
      assertEquals(p.device.setNotifications(true), true); // the race vhost_enable_notify closes
      const c = p.device.pop()!;
      assertEquals(p.device.setNotifications(true), false); // consumed: nothing pending
      p.device.push(c, 0);
      p.device.flush();
      assertEquals(p.driver.getUsed(), 1);
    });
  }
}
