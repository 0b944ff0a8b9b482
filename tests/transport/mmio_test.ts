import { assert, assertEquals } from "@std/assert";
import {
  driverOk,
  featureMask,
  notifyQueue,
  resetQueue,
  type RingLayout,
  setupQueue,
  SgList,
  VIRTIO_F_RING_RESET,
  VIRTIO_MMIO_MAGIC,
} from "../../src/mod.ts";
import { codesSince, DATA, rig } from "./_rig.ts";

Deno.test("mmio: identification registers read the spec's values (§4.2.2)", () => {
  const r = rig("split");
  assertEquals(r.mmio.read(0x000), VIRTIO_MMIO_MAGIC);
  assertEquals(r.mmio.read(0x000), 0x74726976);
  assertEquals(r.mmio.read(0x004), 2);
  assertEquals(r.mmio.read(0x008), 1);
  assertEquals(r.mmio.read(0x034), 256); // QueueNumMax of queue 0
  r.mmio.write(0x030, 7);
  assertEquals(r.mmio.read(0x034), 0); // §4.2.2: 0 = queue not available
  assertEquals(r.mmio.read(0x0b0), 0xffff_ffff); // no shared memory region
  assertEquals(r.device.rejectionCount, 0);
});

Deno.test("mmio: REGISTER_ACCESS_INVALID: read of a write-only register, narrow access, write to read-only", () => {
  const r = rig("split");
  assertEquals(r.mmio.read(0x038), 0); // QueueNum is write-only
  r.mmio.write(0x070, 1, 1); // 8-bit access to Status
  r.mmio.write(0x000, 0);
  assertEquals(codesSince(r.device), Array(3).fill("REGISTER_ACCESS_INVALID"));
});

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`mmio ${layout}: bring-up, traffic, QueueReady 0 stops the queue (§4.2.3.2)`, () => {
    const r = rig(layout);
    const n = r.init(r.mmio);
    const q = r.driver<number>(0, 32, n);
    assert(setupQueue(r.mmio, 0, 32, q.addresses));
    driverOk(r.mmio);
    q.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), 5);
    q.kick();
    assertEquals(notifyQueue(r.mmio, 0, q).queue, 0);
    const e = r.device.queue(0)!.engine!;
    const c = e.pop()!;
    e.push(c, 8);
    if (e.flush()) r.device.signalUsed(0);
    assertEquals(r.mmio.read(0x060) & 1, 1);
    r.mmio.write(0x064, 1);
    assertEquals(r.mmio.read(0x060), 0);
    assertEquals(q.getUsed(), 5);
    r.mmio.write(0x044, 0);
    assertEquals([r.mmio.read(0x044), e.ready], [0, false]);
    r.mmio.write(0x038, 16); // allowed again once stopped
    assertEquals(r.device.queue(0)!.size, 16);
    assertEquals(r.device.rejectionCount, 0);
  });
}

Deno.test("mmio: QueueNum while ready, QueueReady twice, QueueReset without the feature", () => {
  const r = rig("split");
  const n = r.init(r.mmio);
  const q = r.driver(0, 32, n);
  setupQueue(r.mmio, 0, 32, q.addresses);
  r.mmio.write(0x038, 8);
  r.mmio.write(0x044, 1);
  r.mmio.write(0x0c0, 1);
  assertEquals(codesSince(r.device), [
    "QUEUE_CONFIG_WHILE_ENABLED",
    "QUEUE_ENABLE_INVALID",
    "QUEUE_RESET_INVALID",
  ]);
});

Deno.test("mmio: QueueReset with RING_RESET resets one queue; ConfigGeneration is 32-bit", () => {
  const r = rig("split", featureMask(VIRTIO_F_RING_RESET), { config: new Uint8Array(4) });
  const n = r.init(r.mmio);
  const q = r.driver<number>(0, 32, n);
  setupQueue(r.mmio, 0, 32, q.addresses);
  assertEquals(resetQueue(r.mmio, 0, q), []);
  assertEquals(r.mmio.read(0x044), 0);
  for (let i = 0; i < 300; i++) r.device.updateConfig(0, new Uint8Array([i & 0xff]));
  assertEquals(r.mmio.read(0x0fc), 300);
  assertEquals(r.mmio.read(0x100, 1), 299 & 0xff);
});
