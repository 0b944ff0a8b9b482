import { assertEquals } from "@std/assert";
import {
  decodeNotificationData,
  driverNotification,
  encodeNotificationData,
  featureMask,
  notifyQueue,
  type RingLayout,
  setupQueue,
  SgList,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
} from "../../src/mod.ts";
import { codesSince, DATA, rig } from "./_rig.ts";

Deno.test("notification data: known answers of the le32 layout (§2.9)", () => {
  // vq 3, packed next_off 5 with wrap 1: 0x8005_0003.
  assertEquals(encodeNotificationData(3, 5 | (1 << 15)), 0x8005_0003);
  assertEquals(decodeNotificationData(0x8005_0003), { vq: 3, nextOff: 5, nextWrap: 1 });
  // split avail idx 0x9234: next_off = low 15 bits, next_wrap = bit 15.
  assertEquals(decodeNotificationData(encodeNotificationData(1, 0x9234)), {
    vq: 1,
    nextOff: 0x1234,
    nextWrap: 1,
  });
  const q = { notificationNext: () => 0x0042 };
  assertEquals(driverNotification(0n, "pci", 2, q), { value: 2, width: 2 });
  assertEquals(driverNotification(0n, "mmio", 2, q), { value: 2, width: 4 });
  const nd = featureMask(VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_NOTIF_CONFIG_DATA);
  assertEquals(driverNotification(nd, "pci", 2, q, 0x77), { value: 0x0042_0077, width: 4 });
  assertEquals(driverNotification(nd, "mmio", 2, q, 0x77), { value: 0x0042_0002, width: 4 });
});

function setup(layout: RingLayout, mmio: boolean, extra = 0n) {
  const r = rig(layout, featureMask(VIRTIO_F_NOTIFICATION_DATA) | extra, {
    queueNotifyData: [0x100, 0x200],
  });
  const t = mmio ? r.mmio : r.pci;
  const n = r.init(t);
  const q = r.driver<number>(0, 8, n);
  setupQueue(t, 0, 8, q.addresses);
  return { ...r, t, q };
}

for (const layout of ["split", "packed"] as RingLayout[]) {
  for (const mmio of [false, true]) {
    const name = `${layout} ${mmio ? "mmio" : "pci"}`;
    Deno.test(`notification data ${name}: the driver's data matches the ring`, () => {
      const s = setup(layout, mmio);
      for (let i = 0; i < 11; i++) { // wraps the 8-entry ring (packed: wrap counter flips)
        s.q.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), i);
        s.q.kick();
        assertEquals(notifyQueue(s.t, 0, s.q), { queue: 0, dataMatches: true });
        const e = s.device.queue(0)!.engine!;
        const c = e.pop()!;
        e.push(c, 0);
        e.flush();
        assertEquals(s.q.getUsed(), i);
      }
      assertEquals(s.device.rejectionCount, 0);
    });

    Deno.test(`notification data ${name}: NOTIFICATION_DATA_MISMATCH when the data is ahead of the ring`, () => {
      const s = setup(layout, mmio);
      s.q.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), 1);
      s.q.kick();
      // Claim two buffers where one was published.
      const next = s.q.notificationNext() + 1;
      const id = 0; // the queue index (NOTIF_CONFIG_DATA is not negotiated here)
      const v = encodeNotificationData(id, next);
      const res = mmio ? s.mmio.write(0x050, v)! : s.pci.notify(0, 4, v);
      assertEquals(res, { queue: 0, dataMatches: false });
      assertEquals(codesSince(s.device), ["NOTIFICATION_DATA_MISMATCH"]);
      // The ring stays authoritative: exactly one chain is consumed.
      const e = s.device.queue(0)!.engine!;
      const c = e.pop()!;
      assertEquals(e.pop(), null);
      e.push(c, 0);
      e.flush();
      assertEquals(s.q.getUsed(), 1);
    });
  }

  Deno.test(`notification data ${layout}: packed next_off beyond the size / NOTIF_CONFIG_DATA unknown id`, () => {
    const s = setup(layout, false, featureMask(VIRTIO_F_NOTIF_CONFIG_DATA));
    s.q.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), 1);
    s.q.kick();
    // With NOTIF_CONFIG_DATA the identifier is queue_notify_data (0x100), not the index 0.
    assertEquals(notifyQueue(s.pci, 0, s.q), { queue: 0, dataMatches: true });
    assertEquals(s.pci.notify(0, 4, encodeNotificationData(0, s.q.notificationNext())).queue, null);
    assertEquals(codesSince(s.device), ["NOTIFY_QUEUE_INVALID"]);
    if (layout === "packed") {
      s.pci.notify(0, 4, encodeNotificationData(0x100, 9)); // next_off 9 >= size 8
      assertEquals(codesSince(s.device, 1), ["NOTIFICATION_DATA_MISMATCH"]);
    }
  });
}
