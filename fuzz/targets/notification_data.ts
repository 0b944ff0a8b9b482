/**
 * Fuzz target `notification-data`: available buffer notifications with VIRTIO_F_NOTIFICATION_DATA
 * (spec §2.9), optionally VIRTIO_F_NOTIF_CONFIG_DATA, on split and packed rings, through the
 * virtio-pci notification region or the virtio-mmio `QueueNotify` register. The driver adds,
 * kicks and notifies; the device pops and completes; notifications carry the driver's true
 * position or one moved by a random delta (ahead of the ring, behind the device, a packed offset
 * beyond the size) or a wrong queue identifier.
 *
 * Oracles: the driver's `notificationNext` is the position an independent count of the added
 * descriptors gives (`driver-data-wrong`); the device's verdict on the data equals the reference
 * window (data between the device's position minus a ring and the driver's published position)
 * (`verdict-mismatch`), with `NOTIFICATION_DATA_MISMATCH` recorded exactly then
 * (`code-mismatch`); a wrong identifier is `NOTIFY_QUEUE_INVALID` (`wrong-queue`); the ring stays
 * authoritative: the device never pops more chains than were published and every token comes back
 * once (`ring-not-authoritative`).
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  createDriverQueue,
  driverOk,
  type DriverQueue,
  encodeNotificationData,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  initializeDevice,
  type NotifyResult,
  RawGpaDmaApi,
  setupQueue,
  SgList,
  TransportDevice,
  type TransportDeviceOptions,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtioMmioRegisters,
  VirtioPciCommonCfg,
} from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

const stepSchema = z.strictObject({
  add: z.number().int().min(0).max(4),
  notify: z.union([
    z.strictObject({ kind: z.literal("delta"), delta: z.number().int().min(-40).max(40) }),
    z.strictObject({ kind: z.literal("offBeyond"), extra: z.number().int().min(0).max(0x7fff) }),
    z.strictObject({ kind: z.literal("wrongId"), id: z.number().int().min(0).max(0xffff) }),
    z.strictObject({ kind: z.literal("none") }),
  ]),
  pop: z.number().int().min(0).max(4),
  complete: z.boolean(),
});
const inputSchema = z.strictObject({
  packed: z.boolean(),
  mmio: z.boolean(),
  cfgData: z.boolean(),
  sizeLog2: z.number().int().min(1).max(4),
  steps: z.array(stepSchema).max(40),
});

/** One input (JSON-safe). */
export type NotificationDataInput = z.infer<typeof inputSchema>;

/** What the target is built over (planted bugs replace parts). */
export interface NotificationEngine {
  /** The device model. */
  device(o: TransportDeviceOptions): TransportDevice;
  /** Wraps the driver queue (identity for the real driver). */
  driver<T>(q: DriverQueue<T>): Pick<DriverQueue<T>, "notificationNext">;
}

const REAL: NotificationEngine = { device: (o) => new TransportDevice(o), driver: (q) => q };
const DATA = 0x80000;
const NOTIFY_ID = 0x1234;

function arbitrary(): fc.Arbitrary<NotificationDataInput> {
  const notify = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ kind: fc.constant("delta" as const), delta: fc.constant(0) }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("delta" as const),
        delta: fc.integer({ min: -40, max: 40 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("offBeyond" as const),
        extra: fc.nat({ max: 0x7fff }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("wrongId" as const), id: fc.nat({ max: 0xffff }) }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  );
  return fc.record({
    packed: fc.boolean(),
    mmio: fc.boolean(),
    cfgData: fc.boolean(),
    sizeLog2: fc.integer({ min: 1, max: 4 }),
    steps: fc.array(
      fc.record({
        add: fc.integer({ min: 0, max: 4 }),
        notify,
        pop: fc.integer({ min: 0, max: 4 }),
        complete: fc.boolean(),
      }, { noNullPrototype: true }),
      { maxLength: 30 },
    ),
  }, { noNullPrototype: true }) as fc.Arbitrary<NotificationDataInput>;
}

let notifications = 0;

/** Builds the target over an engine (the real one, or one with a planted bug). */
export function makeNotificationDataTarget(
  engine: NotificationEngine = REAL,
  suffix = "",
): FuzzTarget<NotificationDataInput> {
  const run = (input: NotificationDataInput): void => {
    const rig = bringUp(engine, input);
    const { device, q, e } = rig;
    let added = 0, published = 0, popped = 0, returned = 0;
    const inFlight: ReturnType<typeof e.pop>[] = [];
    const seen = new Set<number>();
    for (const [k, step] of input.steps.entries()) {
      for (let i = 0; i < step.add && q.numFree >= 2; i++) {
        q.add(SgList.of([DATA + 64 * (added % 64), 8]), SgList.of([DATA + 0x8000, 8]), added);
        added++;
      }
      q.kick();
      published = added;
      const next = checkDriverNext(rig, input, k, added);
      if (!notifyStep(rig, input, k, step.notify, next)) continue;
      for (let i = 0; i < step.pop; i++) {
        const c = e.pop();
        if (c === null) break;
        popped++;
        inFlight.push(c);
      }
      if (popped > published) {
        throw new OracleFailure(
          "ring-not-authoritative",
          `step ${k}: ${popped} chains popped, ${published} published`,
        );
      }
      if (step.complete) {
        for (const c of inFlight) e.push(c!, 0);
        inFlight.length = 0;
        e.flush();
        for (let tok = q.getUsed(); tok !== undefined; tok = q.getUsed()) {
          if (seen.has(tok)) {
            throw new OracleFailure("ring-not-authoritative", `token ${tok} twice`);
          }
          seen.add(tok);
          returned++;
        }
      }
    }
    if (device.status & 64) throw new OracleFailure("ring-not-authoritative", "device needs reset");
    if (returned > popped) {
      throw new OracleFailure("ring-not-authoritative", `${returned} returned, ${popped} popped`);
    }
  };
  return {
    name: "notification-data",
    description:
      `VIRTIO_F_NOTIFICATION_DATA / NOTIF_CONFIG_DATA notifications vs the ring, split and packed, pci and mmio${suffix}`,
    arbitrary,
    run,
    workUnit: "notifications",
    workDone: () => notifications,
    encode: (i) => i,
    decode: (j) => inputSchema.parse(j),
    plantedFaults: ["mismatch-ignored", "data-off-by-one", "driver-next-stale"],
    withPlantedFault: (fault) => makeNotificationDataTarget(planted(fault), ` (planted: ${fault})`),
  };
}

type QueueEngine = NonNullable<NonNullable<ReturnType<TransportDevice["queue"]>>["engine"]>;

/** A device brought up with one queue, and the driver side of that queue. */
interface Rig {
  size: number;
  device: TransportDevice;
  q: DriverQueue<number>;
  drv: Pick<DriverQueue<number>, "notificationNext">;
  e: QueueEngine;
  /** The queue identifier notifications carry (the notify data with NOTIF_CONFIG_DATA on pci). */
  idOk: number;
  send(value: number): NotifyResult;
}

/** Negotiates, sets queue 0 up over a fresh driver queue and sets DRIVER_OK. */
function bringUp(engine: NotificationEngine, input: NotificationDataInput): Rig {
  const size = 1 << input.sizeLog2;
  const memory = GuestMemory.flat(1 << 20);
  let features = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_NOTIFICATION_DATA);
  if (input.packed) features |= featureMask(VIRTIO_F_RING_PACKED);
  if (input.cfgData) features |= featureMask(VIRTIO_F_NOTIF_CONFIG_DATA);
  const device = engine.device({
    memory,
    dma: new IdentityAddressSpace(),
    deviceFeatures: features,
    queueSizeMax: [size],
    queueNotifyData: [NOTIFY_ID],
  });
  const t = input.mmio ? new VirtioMmioRegisters(device, 1) : new VirtioPciCommonCfg(device);
  const negotiated = initializeDevice(t, features);
  if (negotiated === null) throw new OracleFailure("bring-up", "FEATURES_OK refused");
  const q = createDriverQueue<number>(input.packed ? "packed" : "split", {
    memory,
    dma: new RawGpaDmaApi(),
    size,
    features: negotiated,
    ringGpa: 0x10000,
  });
  if (!setupQueue(t, 0, size, q.addresses)) {
    throw new OracleFailure("bring-up", "queue not enabled");
  }
  driverOk(t);
  return {
    size,
    device,
    q,
    drv: engine.driver(q),
    e: device.queue(0)!.engine!,
    idOk: !input.mmio && input.cfgData ? NOTIFY_ID : 0,
    send: (value: number): NotifyResult =>
      t instanceof VirtioMmioRegisters ? t.write(0x050, value)! : t.notify(0, 4, value),
  };
}

/** The driver's `notificationNext` against an independent count of the added descriptors. */
function checkDriverNext(
  rig: Rig,
  input: NotificationDataInput,
  k: number,
  added: number,
): number {
  const size = rig.size;
  // Independent position: split, the avail idx; packed, 2 descriptors per buffer.
  const expectNext = input.packed
    ? (() => {
      const lin = (2 * added) % (2 * size);
      return (lin % size) | ((lin < size ? 1 : 0) << 15);
    })()
    : added & 0xffff;
  const next = rig.drv.notificationNext();
  if (next !== expectNext) {
    throw new OracleFailure(
      "driver-data-wrong",
      `step ${k}: notificationNext 0x${next.toString(16)}, expected 0x${expectNext.toString(16)}`,
    );
  }
  return next;
}

type StepNotify = NotificationDataInput["steps"][number]["notify"];

/**
 * Sends the step's notification (if any) and checks the device's verdict and recorded code
 * against the reference window. Returns `false` when the rest of the step is skipped (an offset
 * beyond the size asked of a split ring).
 */
function notifyStep(
  rig: Rig,
  input: NotificationDataInput,
  k: number,
  n: StepNotify,
  next: number,
): boolean {
  if (n.kind === "none") return true;
  const { device, e, idOk, size } = rig;
  const before = device.rejectionCount;
  let value: number;
  let expectValid: boolean | null; // null: a wrong identifier
  const dev = input.packed
    ? (e as unknown as { availPosition: { offset: number; wrap: number } }).availPosition
    : { offset: (e as unknown as { lastAvailIdx: number }).lastAvailIdx, wrap: 0 };
  if (n.kind === "wrongId") {
    const id = n.id === idOk ? (n.id + 1) & 0xffff : n.id;
    value = encodeNotificationData(id, next);
    expectValid = null;
  } else if (n.kind === "offBeyond") {
    if (!input.packed) return false;
    value = encodeNotificationData(idOk, (size + (n.extra % (0x8000 - size))) | (1 << 15));
    expectValid = false;
  } else if (!input.packed) {
    const claim = (next + n.delta) & 0xffff;
    value = encodeNotificationData(idOk, claim);
    const lo = (dev.offset - size) & 0xffff;
    expectValid = ((claim - lo) & 0xffff) <= ((next - lo) & 0xffff);
  } else {
    const lin = (o: number, w: number) => o + (w === 1 ? 0 : size);
    const pd = lin(next & 0x7fff, next >>> 15);
    const c = (((pd + n.delta) % (2 * size)) + 2 * size) % (2 * size);
    value = encodeNotificationData(idOk, (c % size) | ((c < size ? 1 : 0) << 15));
    const kk = (c - lin(dev.offset, dev.wrap) + 2 * size) % (2 * size);
    const ahead = (pd - lin(dev.offset, dev.wrap) + 2 * size) % (2 * size);
    expectValid = kk === 0 || kk > size || kk <= ahead;
  }
  notifications++;
  const r = rig.send(value);
  const codes = device.rejections.slice(
    device.rejections.length - (device.rejectionCount - before),
  )
    .map((x) => x.code);
  if (expectValid === null) {
    if (r.queue !== null || codes.join() !== "NOTIFY_QUEUE_INVALID") {
      throw new OracleFailure(
        "wrong-queue",
        `step ${k}: identifier mismatch gave ${JSON.stringify(r)} [${codes}]`,
      );
    }
  } else {
    if (r.queue !== 0 || r.dataMatches !== expectValid) {
      throw new OracleFailure(
        "verdict-mismatch",
        `step ${k}: data 0x${
          value.toString(16)
        } (device at ${dev.offset}/${dev.wrap}, driver at 0x${next.toString(16)}): ` +
          `device says ${JSON.stringify(r)}, reference ${expectValid ? "valid" : "mismatch"}`,
      );
    }
    if (codes.join() !== (expectValid ? "" : "NOTIFICATION_DATA_MISMATCH")) {
      throw new OracleFailure("code-mismatch", `step ${k}: recorded [${codes}]`);
    }
  }
  return true;
}

function planted(fault: string): NotificationEngine {
  switch (fault) {
    case "mismatch-ignored":
      return {
        ...REAL,
        device: (o) =>
          new (class extends TransportDevice {
            override notify(a: number | null, v: number, pci?: boolean): NotifyResult {
              const r = super.notify(a, v, pci);
              return r.dataMatches === false ? { ...r, dataMatches: true } : r;
            }
          })(o),
      };
    case "data-off-by-one":
      return {
        ...REAL,
        device: (o) =>
          new (class extends TransportDevice {
            override notify(a: number | null, v: number, pci?: boolean): NotifyResult {
              return super.notify(a, (v + 0x1_0000) >>> 0, pci);
            }
          })(o),
      };
    case "driver-next-stale":
      return {
        ...REAL,
        driver: (q) => ({ notificationNext: () => (q.notificationNext() - 1) & 0xffff }),
      };
  }
  throw new Error(`unknown planted fault ${fault}`);
}

/** The registered target. */
export const notificationDataTarget: FuzzTarget<NotificationDataInput> =
  makeNotificationDataTarget();
