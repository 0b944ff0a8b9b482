import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  type Chain,
  createDeviceQueue,
  createQueuePair,
  decodeVringBase,
  type DeviceQueue,
  encodeVringBase,
  featureMask,
  IdentityAddressSpace,
  isRestorable,
  type RestorableDeviceQueue,
  rewindToUsed,
  type RingLayout,
  SgList,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtqError,
  type VirtqueueState,
} from "../../src/mod.ts";
import {
  driverOk,
  initializeDevice,
  setupQueue,
  TransportDevice,
  VirtioPciCommonCfg,
} from "../../src/mod.ts";
import { rig } from "./_rig.ts";

Deno.test("vhost-user vring base: known answers (split bits 0-15; packed 0-14 + wrap bit 15, used 16-30 + bit 31)", () => {
  const split: VirtqueueState = {
    layout: "split",
    size: 256,
    lastAvail: 0xfffe,
    availWrap: 0,
    used: 0xfffc,
    usedWrap: 0,
    inFlight: [],
  };
  assertEquals(encodeVringBase(split), 0xfffe);
  assertEquals(decodeVringBase("split", 256, 0xfffe, 0xfffc), split);
  const packed: VirtqueueState = {
    layout: "packed",
    size: 256,
    lastAvail: 5,
    availWrap: 0,
    used: 3,
    usedWrap: 1,
    inFlight: [],
  };
  assertEquals(encodeVringBase(packed), 0x8003_0005);
  assertEquals(encodeVringBase({ ...packed, availWrap: 1 }), 0x8003_8005);
  assertEquals(decodeVringBase("packed", 256, 0x8003_8005), { ...packed, availWrap: 1 });
});

Deno.test("vhost-user vring base: RESTORE_STATE_INVALID for reserved split bits and packed offsets >= size", () => {
  for (
    const f of [
      () => decodeVringBase("split", 256, 0x1_0005),
      () => decodeVringBase("packed", 8, 0x0000_0009),
      () =>
        encodeVringBase({
          layout: "packed",
          size: 8,
          lastAvail: 0x8000,
          availWrap: 0,
          used: 0,
          usedWrap: 1,
          inFlight: [],
        }),
    ]
  ) {
    assertEquals(assertThrows(f, VirtqError).code, "RESTORE_STATE_INVALID");
  }
});

function must(q: DeviceQueue): RestorableDeviceQueue {
  if (!isRestorable(q)) throw new Error("the engine does not implement save/restore");
  return q;
}

/** A pair with `popped` chains popped and `used` of them pushed (in pop order), then a fresh device. */
function live(layout: RingLayout, added: number, popped: number, used: number, extra = 0n) {
  const features = featureMask(VIRTIO_F_VERSION_1) | extra |
    (layout === "packed" ? featureMask(VIRTIO_F_RING_PACKED) : 0n);
  const p = createQueuePair<number>({ layout, size: 8, features });
  for (let i = 0; i < added; i++) {
    p.driver.add(SgList.of([p.dataGpa + 256 * i, 8]), SgList.of([p.dataGpa + 256 * i + 64, 8]), i);
  }
  p.driver.kick();
  const chains: Chain[] = [];
  for (let i = 0; i < popped; i++) chains.push(p.device.pop()!);
  for (let i = 0; i < used; i++) p.device.push(chains[i], 0);
  p.device.flush();
  const fresh = (): RestorableDeviceQueue =>
    must(createDeviceQueue(layout, {
      memory: p.memory,
      dma: new IdentityAddressSpace(),
      size: 8,
      addresses: p.driver.addresses,
      features,
    }));
  return { p, chains, fresh, saved: () => must(p.device).saveState() };
}

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`${layout} restore: a saved state with in-flight chains continues in a fresh device`, () => {
    const { p, fresh, saved } = live(layout, 4, 3, 1);
    assert(isRestorable(p.device));
    const state = saved();
    assertEquals(state.inFlight.length, 2);
    const d = fresh();
    const back = d.restoreState(state);
    assertEquals(back.length, 2);
    assertEquals(d.saveState(), state);
    for (const c of back) d.push(c, 0);
    d.push(d.pop()!, 0); // the 4th buffer, never popped before the save
    assertEquals(d.pop(), null);
    d.flush();
    const got = [];
    for (let t = p.driver.getUsed(); t !== undefined; t = p.driver.getUsed()) got.push(t);
    assertEquals(got.sort(), [0, 1, 2, 3]);
  });

  Deno.test(`${layout} restore: RESTORE_STATE_INVALID on a malformed state`, () => {
    const { fresh, saved } = live(layout, 2, 1, 0);
    const s = saved();
    for (
      const bad of [
        { ...s, size: 16 },
        { ...s, inFlight: [s.inFlight[0], s.inFlight[0]] },
        layout === "split" ? { ...s, lastAvail: 0x10000 } : { ...s, availWrap: 2 },
      ]
    ) {
      const d = fresh();
      assertEquals(
        assertThrows(() => d.restoreState(bad), VirtqError).code,
        "RESTORE_STATE_INVALID",
      );
      assertEquals(d.broken?.code, "RESTORE_STATE_INVALID");
      assertEquals(d.pop(), null); // never consumed
    }
  });
}

Deno.test("split restore: RESTORE_RING_MISMATCH: last_avail_idx beyond avail.idx, used idx not the ring's, in-flight count", () => {
  const { fresh, saved } = live("split", 3, 2, 1);
  const s = saved();
  for (
    const bad of [
      { ...s, lastAvail: 5, inFlight: [1, 2, 3, 4] }, // avail idx is 3
      { ...s, used: 0, inFlight: [0, 1] }, // the used ring says 1
      { ...s, inFlight: [] }, // last_avail - used = 1 in use
    ]
  ) {
    const d = fresh();
    assertEquals(assertThrows(() => d.restoreState(bad), VirtqError).code, "RESTORE_RING_MISMATCH");
    assertEquals(d.pop(), null);
  }
});

Deno.test("split restore: vhost-user reconnect without in-flight info is detected; rewindToUsed replays", () => {
  const { fresh, saved } = live("split", 3, 2, 1);
  const num = encodeVringBase(saved());
  const usedIdx = 1; // what the back-end reads from the used ring
  const state = decodeVringBase("split", 8, num, usedIdx);
  const d = fresh();
  assertEquals(assertThrows(() => d.restoreState(state), VirtqError).code, "RESTORE_RING_MISMATCH");
  const d2 = fresh();
  assertEquals(d2.restoreState(rewindToUsed(state)), []);
  // QEMU's rewind: the in-flight buffer (head 2) and the unpopped one (head 4) are processed.
  assertEquals([d2.pop()!.id, d2.pop()!.id, d2.pop()], [2, 4, null]); // 2-descriptor chains
});

Deno.test("split IN_ORDER restore: in-flight heads must be the avail entries from used.idx (RESTORE_RING_MISMATCH)", () => {
  const { fresh, saved } = live("split", 3, 2, 0, featureMask(VIRTIO_F_IN_ORDER));
  const s = saved();
  assertEquals(s.inFlight, [0, 2]); // 2-descriptor chains
  const d = fresh();
  assertEquals(
    assertThrows(() => d.restoreState({ ...s, inFlight: [2, 0] }), VirtqError).code,
    "RESTORE_RING_MISMATCH",
  );
  const ok = fresh();
  assertEquals(ok.restoreState(s).map((c) => c.id), [0, 2]);
  assertEquals(ok.pop()!.id, 4); // IN_ORDER continues at the next head
});

Deno.test("packed restore: RESTORE_RING_MISMATCH: wrong Buffer ID, a position the device already used", () => {
  const { fresh, saved } = live("packed", 3, 2, 1);
  const s = saved();
  const d = fresh();
  assertEquals(
    assertThrows(() => d.restoreState({ ...s, inFlight: [7] }), VirtqError).code,
    "RESTORE_RING_MISMATCH",
  );
  // Nothing in flight, avail position at slot 0 which holds the used descriptor of lap 1.
  const d2 = fresh();
  const bad = { ...s, lastAvail: 0, availWrap: 1, used: 0, usedWrap: 1, inFlight: [] };
  assertEquals(assertThrows(() => d2.restoreState(bad), VirtqError).code, "RESTORE_RING_MISMATCH");
});

Deno.test("packed restore: a used position inside a list is RESTORE_RING_MISMATCH (found by the restore campaign)", () => {
  // One 2-descriptor list at slots 0-1 in flight; the used position moved to slot 1 would re-walk
  // the list's tail as a list of its own with the same Buffer ID and lose the buffer.
  const { fresh, saved } = live("packed", 1, 1, 0);
  const s = saved();
  const bad = { ...s, used: 1 };
  const d = fresh();
  assertEquals(assertThrows(() => d.restoreState(bad), VirtqError).code, "RESTORE_RING_MISMATCH");
});

for (const layout of ["split", "packed"] as RingLayout[]) {
  Deno.test(`${layout} migration: state saved on one device restores into a queue enabled through registers`, () => {
    const src = rig(layout);
    const n = src.init();
    const drv = src.driver<number>(0, 8, n);
    setupQueue(src.pci, 0, 8, drv.addresses);
    driverOk(src.pci);
    for (let i = 0; i < 3; i++) {
      drv.add(SgList.of([0x80000 + 64 * i, 8]), SgList.of([0x90000 + 64 * i, 8]), i);
    }
    drv.kick();
    const e = must(src.device.queue(0)!.engine!);
    const first = e.pop()!;
    e.pop();
    e.push(first, 0);
    e.flush();
    assertEquals(drv.getUsed(), 0);
    const state = e.saveState();
    // The destination: a new device over the same guest memory, programmed by the registers.
    const dst = new TransportDevice({
      memory: src.memory,
      dma: new IdentityAddressSpace(),
      deviceFeatures: src.features,
      queueSizeMax: [256, 256],
    });
    const pci = new VirtioPciCommonCfg(dst);
    assertEquals(initializeDevice(pci, src.features), n);
    // The destination driver does not re-initialise the rings (migration): program the queue.
    setupQueue(pci, 0, 8, drv.addresses);
    const d = must(dst.queue(0)!.engine!);
    const back = d.restoreState(state);
    assertEquals(back.length, 1);
    d.push(back[0], 0);
    d.push(d.pop()!, 0);
    d.flush();
    assertEquals([drv.getUsed(), drv.getUsed(), drv.getUsed()].sort(), [1, 2, undefined]);
  });
}
