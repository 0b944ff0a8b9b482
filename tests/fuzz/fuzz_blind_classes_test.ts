/**
 * The blind classes of the hostile-driver targets, each shown to fire on a bug of its class
 * planted in the engine from the outside (`fuzz/plant.ts`), none written around the oracle that
 * catches it:
 * - an indirect-table check removed (split and packed): the walk takes a violation raised inside
 *   an indirect table as the end of the chain instead of rejecting it, one bug per rule; caught by
 *   the table corruptions (`tbl-*` kinds, packed corruptions of table entries);
 * - lost notifications: a split device that drops the used buffer notification of a batch, or
 *   publishes `avail_event` one behind its position; caught by `lost-notification`.
 *
 * Run-bounded with a fixed seed, as `fuzz_planted_test.ts`.
 */
import { assert, assertEquals } from "@std/assert";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { runUnit } from "../../fuzz/runner.ts";
import { patchMethod, plantedTarget } from "../../fuzz/plant.ts";
import type { Chain } from "../../src/virtio/chain.ts";
import { isVirtqError } from "../../src/virtio/errors.ts";
import { SplitChainWalk } from "../../src/virtio/split/walk.ts";
import { PackedChainWalk } from "../../src/virtio/packed/walk.ts";
import { SplitDeviceQueue } from "../../src/virtio/split/device.ts";
import { PackedDeviceQueue } from "../../src/virtio/packed/device.ts";
import { SplitDriverQueue } from "../../src/virtio/split/driver.ts";
import { VirtioIommuDmaApi } from "../../src/devices/virtio_iommu/driver_api.ts";
import { VirtioIommuDevice } from "../../src/devices/virtio_iommu/device.ts";
import { PackedDriverQueue } from "../../src/virtio/packed/driver.ts";
import type { FuzzTarget } from "../../fuzz/target.ts";

const RUNS = 3000;

function target(name: string): FuzzTarget<unknown> {
  const t = TARGETS.find((t) => t.name === name);
  if (t === undefined) throw new Error(`${name} is not registered`);
  return t;
}

function expectCaught(name: string, install: () => () => void, oracle?: string): void {
  const r = runUnit(plantedTarget(target(name), install), {
    target: name,
    slice: 0,
    seed: 1,
    runs: RUNS,
    maxFailures: 1,
  });
  assertEquals(r.crash, undefined);
  assert(r.failures.length > 0, `${name}: the planted bug went unnoticed in ${r.runs} runs`);
  if (oracle !== undefined) {
    assertEquals(r.failures[0].signature.oracle, oracle, r.failures[0].message);
  }
}

/** The split walk takes `code`, raised inside an indirect table, as the end of the chain. */
const splitTableCheckRemoved = (code: string) => () =>
  patchMethod(
    SplitChainWalk.prototype,
    "walk",
    (original) =>
      function (this: SplitChainWalk, chain: Chain, head: number) {
        try {
          original.call(this, chain, head);
        } catch (e) {
          if (!chain.indirect || !isVirtqError(e) || e.code !== code) throw e;
        }
      },
  );

/** The packed walk takes `code`, raised inside an indirect table, as the end of the list. */
const packedTableCheckRemoved = (code: string) => () =>
  patchMethod(PackedChainWalk.prototype, "walk", (original) =>
    function (
      this: PackedChainWalk,
      chain: Chain,
      headSlot: number,
      headFlags: number,
      wrap: number,
    ): number {
      try {
        return original.call(this, chain, headSlot, headFlags, wrap);
      } catch (e) {
        if (!chain.indirect || !isVirtqError(e) || e.code !== code) throw e;
        // An indirect descriptor is a list of one slot (§2.8.7).
        chain.id = this.d16[headSlot * 8 + 6];
        chain.ringDescriptors = 1;
        const next = headSlot + 1;
        this.nextSlot = next === this.size ? 0 : next;
        this.nextWrap = next === this.size ? wrap ^ 1 : wrap;
        return 1;
      }
    });

const SPLIT_TABLE_CODES = [
  "DESC_NEXT_OUT_OF_RANGE",
  "DESC_CHAIN_LOOP",
  "DESC_ADDR_WRAP",
  "DESC_BUFFER_FAULT",
  "CHAIN_TOO_MANY_BYTES",
  "DESC_READABLE_AFTER_WRITABLE",
  "DESC_ZERO_LENGTH",
  "DESC_UNKNOWN_FLAGS",
];
for (const code of SPLIT_TABLE_CODES) {
  Deno.test(`blind class: split-hostile-driver reports an indirect table without the ${code} check`, () => {
    expectCaught("split-hostile-driver", splitTableCheckRemoved(code));
  });
}

const PACKED_TABLE_CODES = [
  "DESC_ADDR_WRAP",
  "DESC_BUFFER_FAULT",
  "DESC_READABLE_AFTER_WRITABLE",
  "DESC_ZERO_LENGTH",
  "DESC_UNKNOWN_FLAGS",
];
for (const code of PACKED_TABLE_CODES) {
  Deno.test(`blind class: packed-hostile-driver reports an indirect table without the ${code} check`, () => {
    expectCaught("packed-hostile-driver", packedTableCheckRemoved(code));
  });
}

Deno.test("blind class: split-hostile-driver reports a flush that drops a batch's notification", () => {
  expectCaught(
    "split-hostile-driver",
    () =>
      patchMethod(
        SplitDeviceQueue.prototype,
        "flush",
        (original) =>
          function (this: SplitDeviceQueue): boolean {
            const old = this.usedIdx;
            const notify = original.call(this);
            return notify && ((this.usedIdx - old) & 0xffff) === 1; // batches lose the interrupt
          },
      ),
    "lost-notification",
  );
});

Deno.test("blind class: split-hostile-driver reports avail_event published one behind", () => {
  expectCaught(
    "split-hostile-driver",
    () =>
      patchMethod(
        SplitDeviceQueue.prototype,
        "setNotifications",
        (original) =>
          function (this: SplitDeviceQueue, enabled: boolean): boolean {
            const more = original.call(this, enabled);
            if (enabled && this.ready && this.broken === null) {
              // avail_event; the target's wide runs place the rings at bus = GPA + 2^52.
              const at = Number(this.addresses.deviceAddr) % 2 ** 52 + 4 + 8 * this.size;
              this.memory.writeU16(at, (this.lastAvailIdx - 1) & 0xffff);
            }
            return more;
          },
      ),
    "lost-notification",
  );
});

/** Drivers that notify only for a batch of one buffer (need_event evaluated with old = new - 1). */
const batchKickDropped = <Q extends { kick(): boolean; readonly outstanding: number }>(
  proto: Q,
) =>
() => {
  const before = new WeakMap<object, number>();
  return patchMethod(
    proto,
    "kick",
    (original) =>
      function (this: Q & { availIdx?: number }): boolean {
        const idx = this.availIdx ?? 0;
        const batch = (idx - (before.get(this) ?? 0)) & 0xffff;
        before.set(this, idx);
        const notify = (original as () => boolean).call(this);
        return notify && batch <= 1;
      } as Q["kick"],
  );
};

Deno.test("blind class: split-hostile-device reports a driver that drops a batch's kick", () => {
  expectCaught(
    "split-hostile-device",
    batchKickDropped(SplitDriverQueue.prototype),
    "lost-notification",
  );
});

Deno.test("blind class: packed-hostile-device reports a driver that drops a batch's kick", () => {
  expectCaught(
    "packed-hostile-device",
    () => {
      // The packed driver has no public avail index: count the adds since the last kick.
      const added = new WeakMap<object, number>();
      const undoAdd = patchMethod(
        PackedDriverQueue.prototype,
        "add",
        (original) =>
          function (this: PackedDriverQueue<unknown>, ...a: Parameters<typeof original>) {
            original.apply(this, a);
            added.set(this, (added.get(this) ?? 0) + 1);
          },
      );
      const undoKick = patchMethod(
        PackedDriverQueue.prototype,
        "kick",
        (original) =>
          function (this: PackedDriverQueue<unknown>): boolean {
            const batch = added.get(this) ?? 0;
            added.set(this, 0);
            return original.call(this) && batch <= 1;
          },
      );
      return () => {
        undoKick();
        undoAdd();
      };
    },
    "lost-notification",
  );
});

Deno.test("blind class: packed-hostile-driver reports a flush that counts a list as one slot", () => {
  // need_event evaluated with old = new - 1: a used list of several descriptors moves the used
  // position by several slots, and an event offset inside the list is passed unseen.
  expectCaught(
    "packed-hostile-driver",
    () => {
      const since = new WeakMap<object, { offset: number; wrap: number }>();
      const undoPush = patchMethod(
        PackedDeviceQueue.prototype,
        "push",
        (original) =>
          function (this: PackedDeviceQueue, chain: Chain, written: number) {
            if (!since.has(this)) since.set(this, this.usedPosition);
            original.call(this, chain, written);
          },
      );
      const undoFlush = patchMethod(
        PackedDeviceQueue.prototype,
        "flush",
        (original) =>
          function (this: PackedDeviceQueue): boolean {
            const o = since.get(this) ?? this.usedPosition;
            since.delete(this);
            const notify = original.call(this);
            const n = this.usedPosition;
            const count = n.offset - o.offset + (n.wrap !== o.wrap ? this.size : 0);
            return notify && count <= 1;
          },
      );
      return () => {
        undoFlush();
        undoPush();
      };
    },
    "lost-notification",
  );
});

Deno.test("blind class: viommu-stack reports a driver that forgets what PROBE reported", () => {
  expectCaught(
    "viommu-stack",
    () =>
      patchMethod(
        VirtioIommuDmaApi.prototype,
        "init",
        (original) =>
          function (this: VirtioIommuDmaApi): void {
            original.call(this);
            this.resvMem = []; // the RESV_MEM regions are dropped after init
          },
      ),
    "feature-implied",
  );
});

Deno.test("blind class: viommu-requests reports a device that acts on offered, not negotiated, features", () => {
  expectCaught(
    "viommu-requests",
    () =>
      patchMethod(
        VirtioIommuDevice.prototype,
        "has",
        () =>
          function (this: VirtioIommuDevice, n: number): boolean {
            return this.offers(n); // what the device offered, whatever the driver accepted
          },
      ),
    "status",
  );
});
