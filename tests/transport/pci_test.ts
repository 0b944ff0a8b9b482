import { assert, assertEquals } from "@std/assert";
import {
  driverOk,
  featureMask,
  notifyQueue,
  resetQueue,
  type RingLayout,
  setupQueue,
  SgList,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_RESET,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON_CFG,
} from "../../src/mod.ts";
import { codesSince, DATA, rig } from "./_rig.ts";

const ACK = VIRTIO_CONFIG_S_ACKNOWLEDGE, DRV = VIRTIO_CONFIG_S_DRIVER;
const FOK = VIRTIO_CONFIG_S_FEATURES_OK, DOK = VIRTIO_CONFIG_S_DRIVER_OK;

Deno.test("pci common cfg: field offsets and widths are the spec's (§4.1.4.3)", () => {
  const at = Object.fromEntries(VIRTIO_PCI_COMMON_CFG.map((f) => [f.name, [f.offset, f.width]]));
  assertEquals(at.device_status, [0x14, 1]);
  assertEquals(at.config_generation, [0x15, 1]);
  assertEquals(at.queue_select, [0x16, 2]);
  assertEquals(at.queue_desc, [0x20, 8]);
  assertEquals(at.queue_notify_data, [0x38, 2]);
  assertEquals(at.queue_reset, [0x3a, 2]);
});

Deno.test("pci: reset values read back (§4.1.4.3): sizes at max, NO_VECTOR, disabled", () => {
  const r = rig("split");
  assertEquals(r.pci.read(0x12, 2), 2); // num_queues
  assertEquals(r.pci.read(0x18, 2), 256); // queue_size = max
  assertEquals(r.pci.read(0x1a, 2), VIRTIO_MSI_NO_VECTOR);
  assertEquals(r.pci.read(0x10, 2), VIRTIO_MSI_NO_VECTOR);
  assertEquals(r.pci.read(0x1c, 2), 0);
  r.pci.write(0x00, 4, 1); // device_feature_select = 1
  assertEquals(r.pci.read(0x04, 4), 1); // VERSION_1 is bit 32
  assertEquals(r.device.rejectionCount, 0);
});

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`pci ${layout}: queues created by the registers carry buffers`, () => {
    const r = rig(layout);
    const n = r.init();
    const drv = r.driver<number>(0, 64, n);
    assert(setupQueue(r.pci, 0, 64, drv.addresses, 1));
    driverOk(r.pci);
    assertEquals(r.pci.read(0x14, 1), ACK | DRV | FOK | DOK);
    drv.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), 7);
    assert(drv.kick());
    assertEquals(notifyQueue(r.pci, 0, drv).queue, 0);
    const e = r.device.queue(0)!.engine!;
    const c = e.pop()!;
    e.push(c, 4);
    if (e.flush()) r.device.signalUsed(0);
    assertEquals(r.device.lastInterrupts, [1]);
    assertEquals(drv.getUsed(), 7);
    assertEquals(r.device.rejectionCount, 0);
  });
}

Deno.test("pci: STATUS_TRANSITION_INVALID: clearing a bit, skipping a step, setting NEEDS_RESET", () => {
  const r = rig("split");
  r.pci.write(0x14, 1, ACK | DRV);
  r.pci.write(0x14, 1, ACK); // clears DRIVER
  r.pci.write(0x14, 1, ACK | DRV | DOK); // DRIVER_OK before FEATURES_OK
  r.pci.write(0x14, 1, ACK | DRV | VIRTIO_CONFIG_S_NEEDS_RESET);
  assertEquals(codesSince(r.device), Array(3).fill("STATUS_TRANSITION_INVALID"));
  assertEquals(r.pci.read(0x14, 1), ACK | DRV);
  r.pci.write(0x14, 1, 0); // reset: reads 0 at once (§2.4)
  assertEquals(r.pci.read(0x14, 1), 0);
});

Deno.test("pci: FEATURES_WRITE_INVALID: not offered -> FEATURES_OK stays clear; write after FEATURES_OK ignored", () => {
  const r = rig("split");
  r.pci.write(0x14, 1, ACK | DRV);
  r.pci.write(0x08, 4, 0);
  r.pci.write(0x0c, 4, 1 << 5); // a device-specific bit the device did not offer
  r.pci.write(0x14, 1, ACK | DRV | FOK);
  assertEquals(r.pci.read(0x14, 1) & FOK, 0); // §3.1.1 step 6: re-read shows refusal
  assertEquals(codesSince(r.device), ["FEATURES_WRITE_INVALID"]);
  r.init();
  r.pci.write(0x08, 4, 1);
  r.pci.write(0x0c, 4, 0); // after FEATURES_OK: ignored
  assertEquals(r.pci.read(0x0c, 4), 1);
  assertEquals(codesSince(r.device, 1), ["FEATURES_WRITE_INVALID"]);
});

Deno.test("pci: QUEUE_SELECT_OUT_OF_RANGE: writes ignored, queue registers read 0", () => {
  const r = rig("split");
  r.init();
  r.pci.write(0x16, 2, 9);
  assertEquals(r.pci.read(0x16, 2), 9);
  r.pci.write(0x18, 2, 16);
  assertEquals(r.pci.read(0x18, 2), 0);
  assertEquals(codesSince(r.device), ["QUEUE_SELECT_OUT_OF_RANGE"]);
});

Deno.test("pci: QUEUE_SIZE_WRITE_INVALID: 0, above max, split non-power-of-2 (packed accepts 3)", () => {
  const r = rig("split");
  r.init();
  for (const v of [0, 512, 3]) r.pci.write(0x18, 2, v);
  assertEquals(codesSince(r.device), Array(3).fill("QUEUE_SIZE_WRITE_INVALID"));
  assertEquals(r.pci.read(0x18, 2), 256);
  r.pci.write(0x18, 2, 16);
  assertEquals(r.pci.read(0x18, 2), 16); // the driver MAY reduce it
  const p = rig("packed");
  p.init();
  p.pci.write(0x18, 2, 3);
  assertEquals([p.pci.read(0x18, 2), p.device.rejectionCount], [3, 0]);
});

Deno.test("pci: QUEUE_CONFIG_WHILE_ENABLED and QUEUE_ENABLE_INVALID; the running queue is untouched", () => {
  const r = rig("split");
  r.pci.write(0x1c, 2, 1); // before FEATURES_OK
  const n = r.init();
  const drv = r.driver(0, 64, n);
  setupQueue(r.pci, 0, 64, drv.addresses);
  r.pci.write(0x20, 4, 0x1000); // queue_desc while enabled
  r.pci.write(0x18, 2, 32);
  r.pci.write(0x1c, 2, 1); // twice
  r.pci.write(0x1c, 2, 0); // MUST NOT write 0
  assertEquals(codesSince(r.device), [
    "QUEUE_ENABLE_INVALID",
    "QUEUE_CONFIG_WHILE_ENABLED",
    "QUEUE_CONFIG_WHILE_ENABLED",
    "QUEUE_ENABLE_INVALID",
    "QUEUE_ENABLE_INVALID",
  ]);
  assertEquals([r.pci.read(0x18, 2), r.pci.read(0x1c, 2)], [64, 1]);
  assertEquals(BigInt(r.pci.read(0x20, 4)), r.device.queue(0)!.descAddr);
});

Deno.test("pci: enabling over a misaligned ring records RING_MISALIGNED and sets DEVICE_NEEDS_RESET", () => {
  const r = rig("split");
  r.init();
  r.pci.write(0x18, 2, 16);
  r.pci.write(0x20, 4, 0x10008); // descriptor table must be 16-aligned
  r.pci.write(0x28, 4, 0x11000);
  r.pci.write(0x30, 4, 0x12000);
  r.pci.write(0x1c, 2, 1);
  assertEquals(codesSince(r.device), ["RING_MISALIGNED"]);
  assertEquals(r.pci.read(0x1c, 2), 0);
  assert((r.pci.read(0x14, 1) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0);
});

Deno.test("pci: MSIX_VECTOR_INVALID: a vector outside the table reads back NO_VECTOR (§4.1.5.1.2)", () => {
  const r = rig("split");
  r.init();
  r.pci.write(0x1a, 2, 3);
  assertEquals(r.pci.read(0x1a, 2), 3);
  r.pci.write(0x1a, 2, 4);
  r.pci.write(0x10, 2, 100);
  assertEquals([r.pci.read(0x1a, 2), r.pci.read(0x10, 2)], [
    VIRTIO_MSI_NO_VECTOR,
    VIRTIO_MSI_NO_VECTOR,
  ]);
  assertEquals(codesSince(r.device), ["MSIX_VECTOR_INVALID", "MSIX_VECTOR_INVALID"]);
});

Deno.test("pci: REGISTER_ACCESS_INVALID: wrong width, read-only field, no field", () => {
  const r = rig("split");
  r.pci.write(0x18, 4, 16);
  r.pci.write(0x04, 4, 0xffff_ffff); // device_feature is read-only
  assertEquals(r.pci.read(0x41, 1), 0);
  assertEquals(codesSince(r.device), Array(3).fill("REGISTER_ACCESS_INVALID"));
  r.pci.write64(0x20, 0x1234_5678_9abc_def0n); // 64-bit access to a 64-bit field is fine
  assertEquals(r.pci.read64(0x20), 0x1234_5678_9abc_def0n);
  assertEquals(r.device.rejectionCount, 3);
});

Deno.test("pci: NOTIFY_QUEUE_INVALID: a disabled queue, an address no queue uses", () => {
  const r = rig("split");
  r.init();
  assertEquals(r.pci.notify(0, 2, 0).queue, null);
  assertEquals(r.pci.notify(0x100, 2, 0).queue, null);
  assertEquals(codesSince(r.device), ["NOTIFY_QUEUE_INVALID", "NOTIFY_QUEUE_INVALID"]);
});

Deno.test("pci: QUEUE_RESET_INVALID without VIRTIO_F_RING_RESET or with a value other than 1", () => {
  const r = rig("split");
  r.init();
  r.pci.write(0x3a, 2, 1);
  const rr = rig("split", featureMask(VIRTIO_F_RING_RESET));
  rr.init();
  rr.pci.write(0x3a, 2, 2);
  assertEquals([...codesSince(r.device), ...codesSince(rr.device)], [
    "QUEUE_RESET_INVALID",
    "QUEUE_RESET_INVALID",
  ]);
});

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`pci ${layout}: RING_RESET resets one queue while the other runs; re-enabled with a new size and rings`, () => {
    const r = rig(layout, featureMask(VIRTIO_F_RING_RESET));
    const n = r.init();
    const q0 = r.driver<number>(0, 32, n);
    const q1 = r.driver<number>(1, 32, n);
    setupQueue(r.pci, 0, 32, q0.addresses);
    setupQueue(r.pci, 1, 32, q1.addresses);
    driverOk(r.pci);
    q0.add(SgList.of([DATA, 8]), SgList.of([DATA + 64, 8]), 1);
    q1.add(SgList.of([DATA + 128, 8]), SgList.of([DATA + 192, 8]), 2);
    q0.kick();
    q1.kick();
    const e1 = r.device.queue(1)!.engine!;
    assert(e1.pop() !== null); // queue 1 has a buffer in flight when it is reset
    assertEquals(resetQueue(r.pci, 1, q1), [2]);
    assertEquals([r.pci.read(0x3a, 2), r.pci.read(0x1c, 2), r.pci.read(0x18, 2)], [0, 0, 256]);
    assertEquals(e1.ready, false);
    // Queue 0 keeps running.
    const e0 = r.device.queue(0)!.engine!;
    const c0 = e0.pop()!;
    e0.push(c0, 0);
    e0.flush();
    assertEquals(q0.getUsed(), 1);
    // Re-enable queue 1 with a new size at new ring addresses.
    const q1b = r.driver<number>(1, 16, n, 0x60000);
    assert(setupQueue(r.pci, 1, 16, q1b.addresses));
    assertEquals(r.device.queue(1)!.engine!.size, 16);
    q1b.add(SgList.of([DATA + 256, 8]), SgList.of([DATA + 320, 8]), 3);
    q1b.kick();
    const e1b = r.device.queue(1)!.engine!;
    const c = e1b.pop()!;
    e1b.push(c, 8);
    e1b.flush();
    assertEquals(q1b.getUsed(), 3);
    assertEquals(r.device.rejectionCount, 0);
  });
}

Deno.test("pci: config generation changes with the configuration; config interrupt after DRIVER_OK", () => {
  const r = rig("split", 0n, { config: new Uint8Array(8) });
  const g0 = r.pci.read(0x15, 1);
  r.device.updateConfig(0, new Uint8Array([1, 2]));
  assert(r.pci.read(0x15, 1) !== g0);
  assertEquals(r.device.lastInterrupts, []);
  r.init();
  r.pci.write(0x10, 2, 2);
  driverOk(r.pci);
  r.device.updateConfig(2, new Uint8Array([3]));
  assertEquals(r.device.lastInterrupts, [2]);
  assertEquals(r.device.readIsr() & 2, 2);
  assertEquals(r.device.readIsr(), 0); // reading the ISR clears it (§4.1.4.5)
});

Deno.test("pci: NOTIFICATION_DATA on: a 2-byte notification is REGISTER_ACCESS_INVALID", () => {
  const r = rig("split", featureMask(VIRTIO_F_NOTIFICATION_DATA));
  const n = r.init();
  const q = r.driver(0, 16, n);
  setupQueue(r.pci, 0, 16, q.addresses);
  assertEquals(r.pci.notify(0, 2, 0).queue, null);
  assertEquals(codesSince(r.device), ["REGISTER_ACCESS_INVALID"]);
});

Deno.test("pci: a queue size truncated to 0 by the 16-bit field is rejected, never a 0-sized queue", () => {
  const r = rig("split");
  r.init();
  r.pci.write(0x18, 2, 0x1_0000); // the low 16 bits are 0
  assertEquals(codesSince(r.device), ["QUEUE_SIZE_WRITE_INVALID"]);
  assertEquals(r.pci.read(0x18, 2), 256);
});

Deno.test("pci: an engine error reported by the device model sets DEVICE_NEEDS_RESET and notifies", () => {
  const r = rig("split");
  const n = r.init();
  const q = r.driver(0, 16, n);
  setupQueue(r.pci, 0, 16, q.addresses);
  r.pci.write(0x10, 2, 3);
  driverOk(r.pci);
  r.device.queueFailed(0);
  assert((r.pci.read(0x14, 1) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0);
  assertEquals(r.device.lastInterrupts, [3]); // §2.1.2: configuration change notification
  r.pci.write(0x14, 1, ACK | DRV | FOK | DOK); // clears NEEDS_RESET: a driver may not
  assertEquals(codesSince(r.device), ["STATUS_TRANSITION_INVALID"]);
  r.pci.write(0x14, 1, 0); // reset recovers
  assertEquals([r.pci.read(0x14, 1), r.pci.read(0x1c, 2)], [0, 0]);
});
