/**
 * Fuzz target `transport-registers`: a hostile driver writes random register sequences to a
 * virtio-pci modern common configuration (spec §4.1.4.3) or a virtio-mmio register block
 * (§4.2.2), mixed with well-formed bring-up and queue set-up sequences so that deep states
 * (FEATURES_OK, enabled queues, DRIVER_OK, queue reset) are reached. Every access runs against
 * the device model AND an independent reference model of what each register must read back and
 * which catalogue code each forbidden write gets. Oracles: no access throws (`threw`); every read
 * returns the reference value (`read-mismatch`); every access records exactly the codes the
 * reference predicts (`code-mismatch`); a queue has an engine exactly when the reference says it
 * is enabled (`engine-mismatch`).
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  TransportDevice,
  type TransportDeviceOptions,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_REGISTERS,
  VIRTIO_PCI_COMMON_CFG,
  VirtioMmioRegisters,
  VirtioPciCommonCfg,
} from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

const MEM = 1 << 20;
const NO_VECTOR = 0xffff;
const ACK = 1, DRV = 2, DOK = 4, FOK = 8, NEEDS_RESET = 64;

const accessSchema = z.strictObject({
  op: z.enum(["w", "r"]),
  off: z.number().int().min(0).max(0x200),
  width: z.union([z.literal(1), z.literal(2), z.literal(4)]),
  value: z.number().int().min(0).max(0xffff_ffff),
});
const opSchema = z.union([
  accessSchema,
  z.strictObject({ op: z.literal("init"), wantMask: z.number().int().min(0).max(15) }),
  z.strictObject({
    op: z.literal("setup"),
    q: z.number().int().min(0).max(3),
    sizeLog2: z.number().int().min(0).max(9),
    place: z.number().int().min(0).max(11),
  }),
  z.strictObject({ op: z.literal("config") }),
  z.strictObject({ op: z.literal("qreset"), q: z.number().int().min(0).max(3) }),
]);
const inputSchema = z.strictObject({
  transport: z.enum(["pci", "mmio"]),
  packed: z.boolean(),
  offer: z.number().int().min(0).max(7),
  maxLog2: z.array(z.number().int().min(0).max(8)).min(1).max(3),
  msixVectors: z.number().int().min(0).max(4),
  ops: z.array(opSchema).max(81),
});

/** One input (JSON-safe). */
export type TransportRegistersInput = z.infer<typeof inputSchema>;
type Op = TransportRegistersInput["ops"][number];
type Access = z.infer<typeof accessSchema>;

/** The engine under test: how the device and its front-ends are built (planted bugs swap it). */
export interface TransportUnderTest {
  /** Builds the device model. */
  device(opts: TransportDeviceOptions): TransportDevice;
}

const REAL: TransportUnderTest = { device: (o) => new TransportDevice(o) };

function offered(input: TransportRegistersInput): bigint {
  let f = featureMask(VIRTIO_F_VERSION_1);
  if (input.packed) f |= featureMask(VIRTIO_F_RING_PACKED);
  if (input.offer & 1) f |= featureMask(VIRTIO_F_RING_RESET);
  if (input.offer & 2) f |= featureMask(VIRTIO_F_NOTIFICATION_DATA);
  if (input.offer & 4) f |= featureMask(VIRTIO_F_NOTIF_CONFIG_DATA);
  return f;
}

/** Ring placement of a `setup` op: split desc | avail | used (aligned 4); packed desc | 4 | 4. */
function placement(packed: boolean, base: number, n: number): number[] {
  if (packed) return [base, base + 16 * n, base + 16 * n + 4];
  const avail = base + 16 * n;
  return [base, avail, (avail + 6 + 2 * n + 3) & ~3];
}

/** Expands the macro ops into register accesses of the chosen transport. */
function expand(input: TransportRegistersInput): Access[] {
  const pci = input.transport === "pci";
  const out: Access[] = [];
  const w = (off: number, width: 1 | 2 | 4, value: number) =>
    out.push({ op: "w", off, width, value: value >>> 0 });
  const status = (v: number) => pci ? w(0x14, 1, v) : w(0x70, 4, v);
  const f = offered(input);
  for (const op of input.ops) {
    if (op.op === "w" || op.op === "r") {
      out.push(op);
    } else if (op.op === "init") {
      status(0);
      status(ACK);
      status(ACK | DRV);
      // wantMask drops some offered extras (bit i: keep extra feature i).
      let want = f;
      if (!(op.wantMask & 1)) want &= ~featureMask(VIRTIO_F_RING_RESET);
      if (!(op.wantMask & 2)) want &= ~featureMask(VIRTIO_F_NOTIFICATION_DATA);
      if (!(op.wantMask & 4)) want &= ~featureMask(VIRTIO_F_NOTIF_CONFIG_DATA);
      for (let i = 0; i < 2; i++) {
        const v = Number((want >> BigInt(32 * i)) & 0xffff_ffffn);
        if (pci) {
          w(0x08, 4, i);
          w(0x0c, 4, v);
        } else {
          w(0x24, 4, i);
          w(0x20, 4, v);
        }
      }
      status(ACK | DRV | FOK);
      if (op.wantMask & 8) status(ACK | DRV | FOK | DOK);
    } else if (op.op === "setup") {
      const n = 1 << op.sizeLog2;
      const a = placement(input.packed, 0x10000 * (op.place + 1), n);
      if (pci) {
        w(0x16, 2, op.q);
        w(0x18, 2, n);
        for (let i = 0; i < 3; i++) w(0x20 + 8 * i, 4, a[i]);
        w(0x1c, 2, 1);
      } else {
        w(0x30, 4, op.q);
        w(0x38, 4, n);
        for (let i = 0; i < 3; i++) w(0x80 + 0x10 * i, 4, a[i]);
        w(0x44, 4, 1);
      }
    } else if (op.op === "qreset") {
      if (pci) {
        w(0x16, 2, op.q);
        w(0x3a, 2, 1);
      } else {
        w(0x30, 4, op.q);
        w(0xc0, 4, 1);
      }
    } else {
      out.push({ op: "w", off: -1, width: 4, value: 0 }); // configuration change (model op)
    }
  }
  return out;
}

// --- The reference model -------------------------------------------------------------------

interface MQ {
  max: number;
  size: number;
  enabled: boolean;
  addr: number[]; // desc lo, desc hi, driver lo, driver hi, device lo, device hi
  vec: number;
}

/** What the spec says each register reads back and which code each forbidden write gets. */
class Reference {
  status = 0;
  drvFeat = 0n;
  negotiated = 0n;
  devSel = 0;
  drvSel = 0;
  qSel = 0;
  msix = NO_VECTOR;
  gen = 0;
  isr = 0;
  readonly cfg = new Uint8Array(4);
  readonly qs: MQ[];
  constructor(readonly input: TransportRegistersInput, readonly offer: bigint) {
    this.qs = input.maxLog2.map((l) => this.#fresh(1 << l));
  }
  #fresh(max: number): MQ {
    return { max, size: max, enabled: false, addr: [0, 0, 0, 0, 0, 0], vec: NO_VECTOR };
  }
  get packed(): boolean {
    const f = this.status & FOK ? this.negotiated : this.drvFeat;
    return (f & featureMask(VIRTIO_F_RING_PACKED)) !== 0n;
  }
  has(bit: number): boolean {
    return (this.negotiated & featureMask(bit)) !== 0n;
  }
  reset(): void {
    this.status = 0;
    this.drvFeat = 0n;
    this.negotiated = 0n;
    this.msix = NO_VECTOR;
    this.isr = 0;
    this.devSel = this.drvSel = this.qSel = 0;
    for (let i = 0; i < this.qs.length; i++) this.qs[i] = this.#fresh(this.qs[i].max);
  }
  needsReset(): void {
    if (this.status & NEEDS_RESET) return;
    this.status |= NEEDS_RESET;
    if (this.status & DOK) this.isr |= 2;
  }
  writeStatus(v: number): string[] {
    v &= 0xff;
    if (v === 0) {
      this.reset();
      return [];
    }
    const old = this.status;
    if (old & ~v) return ["STATUS_TRANSITION_INVALID"];
    const add = v & ~old;
    if (add & NEEDS_RESET) return ["STATUS_TRANSITION_INVALID"];
    if ((add & DRV && !(v & ACK)) || (add & FOK && !(v & DRV)) || (add & DOK && !(v & FOK))) {
      return ["STATUS_TRANSITION_INVALID"];
    }
    if (add & FOK) {
      if (this.drvFeat & ~this.offer) {
        this.status = (v & ~(FOK | DOK)) | (old & NEEDS_RESET);
        return ["FEATURES_WRITE_INVALID"];
      }
      this.negotiated = this.drvFeat;
    }
    this.status = v | (old & NEEDS_RESET);
    return [];
  }
  writeDrvFeat(v: number): string[] {
    if (!(this.status & DRV) || this.status & FOK) return ["FEATURES_WRITE_INVALID"];
    const sh = 32n * BigInt(this.drvSel);
    this.drvFeat = (this.drvFeat & ~(0xffff_ffffn << sh)) | (BigInt(v >>> 0) << sh);
    return [];
  }
  q(): MQ | undefined {
    return this.qs[this.qSel];
  }
  vector(v: number): { v: number; codes: string[] } {
    const x = v & 0xffff;
    if (x === NO_VECTOR || x < this.input.msixVectors) return { v: x, codes: [] };
    return { v: NO_VECTOR, codes: ["MSIX_VECTOR_INVALID"] };
  }
  queueWrite(
    kind: "size" | "addr" | "vec" | "enable" | "reset",
    v: number,
    i = 0,
    mmio = false,
  ): string[] {
    const q = this.q();
    if (q === undefined) return ["QUEUE_SELECT_OUT_OF_RANGE"];
    switch (kind) {
      case "size": {
        if (q.enabled) return ["QUEUE_CONFIG_WHILE_ENABLED"];
        const pow2 = (v & (v - 1)) === 0;
        if (v < 1 || v > q.max || (!this.packed && !pow2)) return ["QUEUE_SIZE_WRITE_INVALID"];
        q.size = v;
        return [];
      }
      case "addr":
        if (q.enabled) return ["QUEUE_CONFIG_WHILE_ENABLED"];
        q.addr[i] = v >>> 0;
        return [];
      case "vec": {
        const r = this.vector(v);
        q.vec = r.v;
        return r.codes;
      }
      case "enable": {
        if (v === 0 && mmio) {
          q.enabled = false;
          return [];
        }
        if (v !== 1 || q.enabled || !(this.status & FOK)) return ["QUEUE_ENABLE_INVALID"];
        const code = this.ringProblem(q);
        if (code !== null) {
          this.needsReset();
          return [code];
        }
        q.enabled = true;
        return [];
      }
      case "reset":
        if (!this.has(VIRTIO_F_RING_RESET) || v !== 1) return ["QUEUE_RESET_INVALID"];
        this.qs[this.qSel] = this.#fresh(q.max);
        return [];
    }
  }
  /** §2.6 alignment / reachability of the ring areas, in the engines' order. */
  ringProblem(q: MQ): string | null {
    const n = q.size;
    const packed = this.packed;
    const pow2 = (n & (n - 1)) === 0;
    if (n < 1 || n > 32768 || (!packed && !pow2)) return "QUEUE_SIZE_INVALID";
    const areas = packed
      ? [[16, 16 * n], [4, 4], [4, 4]]
      : [[16, 16 * n], [2, 6 + 2 * n], [4, 6 + 8 * n]];
    for (let i = 0; i < 3; i++) {
      const lo = q.addr[2 * i], hi = q.addr[2 * i + 1];
      const [align, len] = areas[i];
      if (lo % align !== 0) return "RING_MISALIGNED";
      if (hi !== 0 || lo + len > MEM) return "RING_UNMAPPED";
    }
    return null;
  }
  config(byte: number): void {
    this.cfg[0] = byte;
    this.gen = (this.gen + 1) >>> 0;
    if (this.status & DOK) this.isr |= 2;
  }

  /** PCI common cfg access: returns [read value or null, codes]. */
  pci(a: Access): [number | null, string[]] {
    const f = VIRTIO_PCI_COMMON_CFG.find((x) => x.offset === a.off) ??
      VIRTIO_PCI_COMMON_CFG.find((x) => x.width === 8 && x.offset + 4 === a.off);
    const hi = f !== undefined && f.offset !== a.off;
    const bad = f === undefined || !(f.width === a.width || (f.width === 8 && a.width === 4));
    if (bad || (a.op === "w" && f!.access === "ro")) {
      return [a.op === "r" ? 0 : null, ["REGISTER_ACCESS_INVALID"]];
    }
    const q = this.q();
    const areaIdx = (name: string) => ["queue_desc", "queue_driver", "queue_device"].indexOf(name);
    if (a.op === "r") {
      switch (f!.name) {
        case "device_feature_select":
          return [this.devSel, []];
        case "device_feature":
          return [Number((this.offer >> (32n * BigInt(this.devSel))) & 0xffff_ffffn), []];
        case "driver_feature_select":
          return [this.drvSel, []];
        case "driver_feature":
          return [Number((this.drvFeat >> (32n * BigInt(this.drvSel))) & 0xffff_ffffn), []];
        case "config_msix_vector":
          return [this.msix, []];
        case "num_queues":
          return [this.qs.length, []];
        case "device_status":
          return [this.status, []];
        case "config_generation":
          return [this.gen & 0xff, []];
        case "queue_select":
          return [this.qSel, []];
        case "queue_size":
          return [q?.size ?? 0, []];
        case "queue_msix_vector":
          return [q?.vec ?? NO_VECTOR, []];
        case "queue_enable":
          return [q?.enabled ? 1 : 0, []];
        case "queue_notify_off":
        case "queue_notify_data":
          return [q === undefined ? 0 : this.qSel, []];
        case "queue_desc":
        case "queue_driver":
        case "queue_device":
          return [q?.addr[2 * areaIdx(f!.name) + (hi ? 1 : 0)] ?? 0, []];
        default:
          return [0, []];
      }
    }
    const v = a.width === 4 ? a.value >>> 0 : a.width === 2 ? a.value & 0xffff : a.value & 0xff;
    switch (f!.name) {
      case "device_feature_select":
        this.devSel = v;
        return [null, []];
      case "driver_feature_select":
        this.drvSel = v;
        return [null, []];
      case "driver_feature":
        return [null, this.writeDrvFeat(v)];
      case "config_msix_vector": {
        const r = this.vector(v);
        this.msix = r.v;
        return [null, r.codes];
      }
      case "device_status":
        return [null, this.writeStatus(v)];
      case "queue_select":
        this.qSel = v;
        return [null, []];
      case "queue_size":
        return [null, this.queueWrite("size", v)];
      case "queue_msix_vector":
        return [null, this.queueWrite("vec", v)];
      case "queue_enable":
        return [null, this.queueWrite("enable", v)];
      case "queue_desc":
      case "queue_driver":
      case "queue_device":
        return [null, this.queueWrite("addr", v, 2 * areaIdx(f!.name) + (hi ? 1 : 0))];
      case "queue_reset":
        return [null, this.queueWrite("reset", v)];
    }
    return [null, []];
  }

  /** MMIO access. */
  mmio(a: Access): [number | null, string[]] {
    if (a.off >= 0x100) {
      // Device configuration space (4 bytes here): byte-addressed, little-endian.
      const o = a.off - 0x100;
      if (o + a.width > this.cfg.length) {
        return [a.op === "r" ? 0 : null, ["REGISTER_ACCESS_INVALID"]];
      }
      if (a.op === "w") return [null, []];
      let v = 0;
      for (let i = a.width - 1; i >= 0; i--) v = v * 256 + this.cfg[o + i];
      return [v, []];
    }
    const f = VIRTIO_MMIO_REGISTERS.find((x) => x.offset === a.off);
    if (
      f === undefined || a.width !== 4 || (a.op === "w" && f.access === "ro") ||
      (a.op === "r" && f.access === "wo")
    ) {
      return [a.op === "r" ? 0 : null, ["REGISTER_ACCESS_INVALID"]];
    }
    const q = this.q();
    const v = a.value >>> 0;
    if (a.op === "r") {
      switch (f.name) {
        case "MagicValue":
          return [0x74726976, []];
        case "Version":
          return [2, []];
        case "DeviceID":
          return [1, []];
        case "VendorID":
          return [0x554d4551, []];
        case "DeviceFeatures":
          return [Number((this.offer >> (32n * BigInt(this.devSel))) & 0xffff_ffffn), []];
        case "QueueNumMax":
          return [q?.max ?? 0, []];
        case "QueueReady":
          return [q?.enabled ? 1 : 0, []];
        case "InterruptStatus":
          return [this.isr, []];
        case "Status":
          return [this.status, []];
        case "ConfigGeneration":
          return [this.gen, []];
        case "QueueReset":
          return [0, []];
        default:
          return [0xffff_ffff, []]; // SHM registers: no region
      }
    }
    switch (f.name) {
      case "DeviceFeaturesSel":
        this.devSel = v;
        return [null, []];
      case "DriverFeaturesSel":
        this.drvSel = v;
        return [null, []];
      case "DriverFeatures":
        return [null, this.writeDrvFeat(v)];
      case "QueueSel":
        this.qSel = v;
        return [null, []];
      case "QueueNum":
        return [null, this.queueWrite("size", v)];
      case "QueueReady":
        return [null, this.queueWrite("enable", v, 0, true)];
      case "QueueNotify": {
        const nq = this.qs[v & 0xffff];
        // With notification data the check needs the ring (notification-data covers it):
        // "?" accepts NOTIFICATION_DATA_MISMATCH or nothing.
        return [
          null,
          nq === undefined || !nq.enabled
            ? ["NOTIFY_QUEUE_INVALID"]
            : this.has(VIRTIO_F_NOTIFICATION_DATA)
            ? ["?"]
            : [],
        ];
      }
      case "InterruptACK":
        this.isr &= ~v;
        return [null, []];
      case "Status":
        return [null, this.writeStatus(v)];
      case "QueueReset":
        return [null, this.queueWrite("reset", v)];
      case "SHMSel":
        return [null, []];
      default: {
        const i = [
          "QueueDescLow",
          "QueueDescHigh",
          "QueueDriverLow",
          "QueueDriverHigh",
          "QueueDeviceLow",
          "QueueDeviceHigh",
        ]
          .indexOf(f.name);
        return [null, this.queueWrite("addr", v, i)];
      }
    }
  }
}

function arbitrary(): fc.Arbitrary<TransportRegistersInput> {
  const value = fc.oneof(
    fc.integer({ min: 0, max: 16 }),
    fc.constantFrom(0xff, 0x100, 0x200, 0xffff, 0x1_0000, 0xffff_ffff, 0x10000, 0x10008, 0xff000),
    fc.constantFrom(ACK, ACK | DRV, ACK | DRV | FOK, ACK | DRV | FOK | DOK, 64, 128, 0x4f),
    fc.nat({ max: 0xffff_ffff }),
  );
  const pciField = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.constantFrom(
        ...VIRTIO_PCI_COMMON_CFG.map((f) => [f.offset, Math.min(f.width, 4)] as [number, number]),
      ),
    },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 0x44 }), fc.constantFrom(1, 2, 4)) },
  );
  const mmioField = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.constantFrom(
        ...VIRTIO_MMIO_REGISTERS.map((f) => [f.offset, 4] as [number, number]),
      ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 0, max: 0x104 }), fc.constantFrom(1, 2, 4)),
    },
  );
  const access = (field: fc.Arbitrary<[number, number]>) =>
    fc.tuple(fc.constantFrom("w" as const, "w" as const, "r" as const), field, value).map((
      [op, [off, width], v],
    ) => ({ op, off, width: width as 1 | 2 | 4, value: v >>> 0 }));
  const macro = fc.oneof(
    fc.record({ op: fc.constant("init" as const), wantMask: fc.integer({ min: 0, max: 15 }) }),
    fc.record({
      op: fc.constant("setup" as const),
      q: fc.integer({ min: 0, max: 3 }),
      sizeLog2: fc.integer({ min: 0, max: 9 }),
      place: fc.integer({ min: 0, max: 11 }),
    }),
    fc.constant({ op: "config" as const }),
    fc.record({ op: fc.constant("qreset" as const), q: fc.integer({ min: 0, max: 3 }) }),
  );
  const init = fc.record({
    op: fc.constant("init" as const),
    wantMask: fc.integer({ min: 0, max: 15 }),
  });
  return fc.constantFrom("pci" as const, "mmio" as const).chain((transport) =>
    fc.record({
      transport: fc.constant(transport),
      packed: fc.boolean(),
      offer: fc.integer({ min: 0, max: 7 }),
      maxLog2: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 1, maxLength: 3 }),
      msixVectors: fc.integer({ min: 0, max: 4 }),
      // Most sequences start with a well-formed bring-up so that queue set-up, DRIVER_OK and
      // queue reset are reached; hostile accesses and macros are then interleaved.
      ops: fc.tuple(
        fc.option(init, { freq: 5, nil: null }),
        fc.array(
          fc.oneof(
            {
              weight: 3,
              arbitrary: access(transport === "pci" ? pciField : mmioField) as fc.Arbitrary<Op>,
            },
            { weight: 2, arbitrary: macro as fc.Arbitrary<Op> },
          ),
          { maxLength: 60 },
        ),
      ).map(([first, rest]) => (first === null ? rest : [first as Op, ...rest])),
    }, { noNullPrototype: true })
  );
}

let accesses = 0;

/** Builds the target over an engine (the real one, or one with a planted bug). */
export function makeTransportRegistersTarget(
  engine: TransportUnderTest = REAL,
  suffix = "",
): FuzzTarget<TransportRegistersInput> {
  const run = (input: TransportRegistersInput): void => {
    const offer = offered(input);
    const memory = GuestMemory.flat(MEM);
    const device = engine.device({
      memory,
      dma: new IdentityAddressSpace(),
      deviceFeatures: offer,
      queueSizeMax: input.maxLog2.map((l) => 1 << l),
      msixVectors: input.msixVectors,
      config: new Uint8Array(4),
    });
    const pci = new VirtioPciCommonCfg(device);
    const mmio = new VirtioMmioRegisters(device, 1);
    const ref = new Reference(input, offer);
    const isPci = input.transport === "pci";
    for (const [k, a] of expand(input).entries()) {
      const before = device.rejectionCount;
      let got: number | null = null;
      let want: [number | null, string[]];
      try {
        if (a.off === -1) {
          device.updateConfig(0, new Uint8Array([k & 0xff]));
          ref.config(k & 0xff);
          want = [null, []];
        } else if (isPci) {
          want = ref.pci(a);
          if (a.op === "r") got = pci.read(a.off, a.width);
          else pci.write(a.off, a.width, a.value);
        } else {
          want = ref.mmio(a);
          if (a.op === "r") got = mmio.read(a.off, a.width);
          else mmio.write(a.off, a.value, a.width);
        }
      } catch (e) {
        throw new OracleFailure("threw", `access #${k} ${JSON.stringify(a)} threw`, e);
      }
      accesses++;
      const where = `access #${k} ${a.op} 0x${a.off.toString(16)}/${a.width} = 0x${
        a.value.toString(16)
      }`;
      if (want[0] !== null && got !== want[0]) {
        throw new OracleFailure(
          "read-mismatch",
          `${where}: read 0x${got?.toString(16)}, spec says 0x${want[0].toString(16)}`,
        );
      }
      const codes = device.rejections.slice(
        device.rejections.length - (device.rejectionCount - before),
      )
        .map((r) => r.code as string);
      const expect = want[1];
      const ok = expect[0] === "?"
        ? codes.length === 0 || (codes.length === 1 && codes[0] === "NOTIFICATION_DATA_MISMATCH")
        : expect.length === codes.length && expect.every((c, i) => codes[i] === c);
      if (!ok) {
        throw new OracleFailure(
          "code-mismatch",
          `${where}: recorded [${codes}], reference [${expect}]`,
        );
      }
      for (let i = 0; i < ref.qs.length; i++) {
        const has = device.queue(i)!.engine !== null;
        if (has !== ref.qs[i].enabled) {
          throw new OracleFailure(
            "engine-mismatch",
            `${where}: queue ${i} engine ${has}, reference enabled ${ref.qs[i].enabled}`,
          );
        }
      }
    }
  };
  return {
    name: "transport-registers",
    description:
      `hostile register sequences on virtio-pci common cfg and virtio-mmio vs a reference model of every register${suffix}`,
    arbitrary,
    run,
    workUnit: "accesses",
    workDone: () => accesses,
    encode: (i) => i,
    decode: (j) => inputSchema.parse(j),
    plantedFaults: PLANTED,
    withPlantedFault: (fault) =>
      makeTransportRegistersTarget(planted(fault), ` (planted: ${fault})`),
  };
}

const PLANTED = [
  "rejections-unrecorded",
  "size-readback-max",
  "vector-not-clamped",
  "enable-twice-accepted",
];

/** Devices carrying one deliberate bug each (test-only). */
function planted(fault: string): TransportUnderTest {
  switch (fault) {
    case "rejections-unrecorded":
      return {
        device: (o) =>
          new (class extends TransportDevice {
            override reject(code: Parameters<TransportDevice["reject"]>[0], detail: string) {
              return code === "QUEUE_SIZE_WRITE_INVALID"
                ? new Error(detail) as never
                : super.reject(code, detail);
            }
          })(o),
      };
    case "size-readback-max":
      return {
        device: (o) =>
          new (class extends TransportDevice {
            override queue(i: number) {
              const q = super.queue(i);
              return q === undefined ? q : { ...q, size: q.sizeMax };
            }
          })(o),
      };
    case "vector-not-clamped":
      return {
        device: (o) =>
          new (class extends TransportDevice {
            override writeQueueMsixVector(sel: number, vector: number): void {
              super.writeQueueMsixVector(
                sel,
                this.msixVectors > 0 ? vector % this.msixVectors : vector,
              );
            }
          })(o),
      };
    case "enable-twice-accepted":
      return {
        device: (o) =>
          new (class extends TransportDevice {
            override writeQueueEnable(sel: number, value: number, t: "pci" | "mmio"): void {
              if (value === 1 && this.queue(sel)?.enabled) return;
              super.writeQueueEnable(sel, value, t);
            }
          })(o),
      };
  }
  throw new Error(`unknown planted fault ${fault}`);
}

/** The registered target. */
export const transportRegistersTarget: FuzzTarget<TransportRegistersInput> =
  makeTransportRegistersTarget();
