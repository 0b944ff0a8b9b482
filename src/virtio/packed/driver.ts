/**
 * The driver side of a packed virtqueue (spec §2.8 "Packed Virtqueues"), hardened against a
 * hostile device as Linux `virtio_ring.c` is (`virtqueue_get_buf_ctx_packed`, `desc_extra`).
 *
 * - Ring areas live at `ringGpa` (see {@link packedDriverQueueFootprint}) and are mapped with
 *   `dma.mapCoherent`; buffers and indirect tables are mapped with `dma.map` at `add` and unmapped
 *   when `getUsed` returns them.
 * - Buffer IDs are managed apart from ring slots: a free list over a driver-private shadow
 *   (`desc_extra`) of Queue Size entries; a buffer takes one entry per ring descriptor and its ID
 *   is its first entry. Unmapping and freeing walk only this shadow, never the shared ring (#42);
 *   the skip distance of a used descriptor comes from the shadow, never from the device (#43).
 * - Batching: `add` writes every descriptor but the first head's flags, which `kick` writes last,
 *   so a batch is published at once (§2.8.21).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { type U64, u64Add, u64Hi, u64Lo } from "../../memory/u64.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaApi,
  type DmaDirection,
  hasUnmapPage,
} from "../../dma/types.ts";
import { RawGpaDmaApi } from "../../dma/identity.ts";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../constants.ts";
import { VirtqError, type VirtqErrorCode } from "../errors.ts";
import {
  hasFeature,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
} from "../features.ts";
import type {
  DriverPolicy,
  DriverQueue,
  DriverQueueOptions,
  RingLayout,
  VirtqueueAddresses,
} from "../queue.ts";
import type { SgList } from "../sg_list.ts";
import {
  isValidPackedQueueSize,
  PACKED_DRIVER_INDIRECT_MAX,
  PACKED_EVENT_FLAGS_MASK,
  packedEventOffWrap,
  packedNeedEvent,
  type PackedRingLayout,
  packedRingLayout,
} from "./layout.ts";

const TWO_POW_32 = 0x1_0000_0000;
// Words of #idInfo, per buffer ID (ID_STRIDE words each).
const ID_STRIDE = 3;
const ID_NUM = 0;
const ID_TBL = 1;
const ID_LAST = 2;

/**
 * Bytes of guest memory a packed driver queue needs at `ringGpa`: the descriptor ring, both event
 * suppression structures and, with `VIRTIO_F_INDIRECT_DESC`, an indirect-table arena of
 * {@link PACKED_DRIVER_INDIRECT_MAX} descriptors per buffer ID; rounded up to 4096.
 * @param size Queue Size, 1..32768.
 * @param features negotiated feature bits (only `VIRTIO_F_INDIRECT_DESC` matters).
 * @throws RangeError for an invalid Queue Size.
 */
export function packedDriverQueueFootprint(size: number, features: bigint = 0n): number {
  return packedRingLayout(size, hasFeature(features, VIRTIO_F_INDIRECT_DESC)).totalBytes;
}

/**
 * The driver's side of a packed virtqueue (spec §2.8), implementing {@link DriverQueue}.
 *
 * Features honoured: `VIRTIO_F_INDIRECT_DESC` (§2.8.7, tables of up to
 * {@link PACKED_DRIVER_INDIRECT_MAX} descriptors), `VIRTIO_F_EVENT_IDX` (`RING_EVENT_FLAGS_DESC`
 * in both directions, §2.8.10), `VIRTIO_F_IN_ORDER` (§2.8.9: one used descriptor may retire a
 * batch; buffers retired without their own used descriptor report their full writable capacity).
 *
 * Hostile device (driver-side codes; the queue becomes broken, `getUsed` then returns
 * `undefined` and `add` throws `QUEUE_BROKEN`): `USED_ID_OUT_OF_RANGE` (#38),
 * `USED_ID_NOT_HEAD` (#39: never added, already returned, or not yet published),
 * `USED_LEN_EXCEEDS_CAPACITY` (#40, policy). A used descriptor whose flags do not match the
 * driver's used wrap counter is "not used yet" (#43), never an error.
 */
export class PackedDriverQueue<T> implements DriverQueue<T> {
  /** Layout: `"packed"`. */
  readonly layout: RingLayout = "packed";
  /** Queue Size in descriptors. */
  readonly size: number;
  /** Bus addresses of the descriptor ring, driver area and device area. */
  readonly addresses: VirtqueueAddresses;
  /** Where each part lives in the ring memory. */
  readonly ringLayout: PackedRingLayout;
  /** Written length (bytes) reported for the token last returned by `getUsed`. */
  usedLen = 0;

  readonly #memory: GuestMemory;
  readonly #dma: DmaApi;
  /**
   * True when the DMA API is exactly {@link RawGpaDmaApi} (no own `map` / `unmap` either): map
   * returns the GPA, unmap is a no-op, so the shadow needs no mapping record.
   */
  readonly #rawDma: boolean;
  /**
   * `#rawDma`, not broken, no `VIRTIO_F_IN_ORDER`: `add` may take its one-segment fast path
   * (see {@link #syncFast}).
   */
  #fastAdd = false;
  /**
   * `#rawDma` or `#fastMap`, not broken, no `VIRTIO_F_IN_ORDER`, callbacks not in
   * `RING_EVENT_FLAGS_DESC` mode: `getUsed` may take its fast path (see {@link #syncFast}).
   */
  #fastUsed = false;
  /** The DMA API has the number-only fast path {@link DmaApi.mapNumber}. */
  readonly #mapNum: boolean;
  /** Not `#rawDma`, with `DmaApi.mapNumber`: a one-segment add is {@link #addGeneral}'s own. */
  readonly #fastMap: boolean;
  /** The DMA API has the number-only unmap {@link DmaApi.unmapPage}. */
  readonly #unmapPg: boolean;
  readonly #ringGpa: number;
  readonly #ringBus: U64;
  readonly #indirectOk: boolean;
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  readonly #clamp: boolean;
  readonly #indirectMode: number; // 0 never, 1 always, 2 auto
  readonly #d32: Uint32Array;
  readonly #d16: Uint16Array;
  readonly #drvEv: Uint16Array;
  readonly #devEv: Uint16Array;
  readonly #arenaGpa: number;
  readonly #a32: Uint32Array;
  readonly #a16: Uint16Array;

  #broken: VirtqError | null = null;
  #nextAvail = 0;
  #availWrap = 1;
  #lastUsed = 0;
  #usedWrap = 1;
  #numFree: number;
  #outstanding = 0;
  #cbMode = RING_EVENT_FLAGS_ENABLE;

  // Driver-private shadow of every exposed descriptor (Linux desc_extra), with a free list.
  /**
   * Bus address of each shadow entry; NaN when `map` returned a bigint (above 2^53 - 1), which
   * then lives in {@link #exBusBig}. A typed array: a generic array would box every address at
   * or above 2^31 (a heap number per descriptor).
   */
  readonly #exBus: Float64Array;
  /** Bus addresses `map` returned as bigints (rare: DDW windows, Xen grants), by shadow entry. */
  readonly #exBusBig: (bigint | undefined)[];
  readonly #exLen: Uint32Array;
  readonly #exDir: Uint8Array;
  readonly #exNext: Int32Array;
  #freeHead = 0;

  // Per buffer ID.
  readonly #tokens: (T | undefined)[];
  /**
   * Three words per buffer ID, one typed array: at `3 * id +` {@link ID_NUM} ring slots
   * (= shadow entries; 1 while the ID is free: `#detach` resets it, so a one-descriptor add
   * need not write it), {@link ID_TBL} indirect table entries (0 when direct, and always 0 while
   * the ID is free: `#detach` clears it, so a direct add need not write it), {@link ID_LAST} the
   * last shadow entry (the first is the ID), written only for lists of more than one descriptor
   * (a one-descriptor buffer's last entry is its ID).
   */
  readonly #idInfo: Int32Array;
  readonly #idCap: Float64Array; // device-writable bytes
  /** Bus address of each indirect-table entry's mapping; NaN when a bigint (#tblBusBig). */
  readonly #tblBus: Float64Array;
  readonly #tblBusBig: (bigint | undefined)[];
  readonly #tblLen: Uint32Array;
  readonly #tblDir: Uint8Array;

  // Batch since the last kick.
  #pendHeadSlot = -1;
  #pendHeadFlags = 0;
  /**
   * Per buffer ID, its state and kick epoch in one word: the epoch of its add when outstanding
   * (published once below {@link #epoch}), `Infinity` when free. One comparison,
   * `#idOut[id] >= #epoch`, tells `getUsed` that the ID is not a published head.
   */
  readonly #idOut: Float64Array;
  #epoch = 1;
  /** Ring position and avail wrap counter at the last kick (what a kick has to publish). */
  #kickAvail = 0;
  #kickWrap = 1;

  // IN_ORDER: IDs in the order they were made available; the batch being retired.
  readonly #fifo: Int32Array;
  #fifoHead = 0;
  #fifoCount = 0;
  #batchEnd = -1;
  #batchLen = 0;

  /**
   * Creates the driver side of a packed queue, zeroes its ring memory and maps the ring areas
   * coherently.
   * @param options memory, DMA API, Queue Size (1..32768, any value), features, `ringGpa`
   * (16-aligned; {@link packedDriverQueueFootprint} bytes), policy.
   * @throws VirtqError `QUEUE_SIZE_INVALID` (not 1..32768), `RING_MISALIGNED` (`ringGpa` not
   * 16-aligned), `RING_UNMAPPED` (the footprint is not inside one guest memory region),
   * `DMA_MAP_FAILED` (the coherent mapping of the ring areas failed).
   */
  constructor(options: DriverQueueOptions) {
    const size = options.size;
    if (!isValidPackedQueueSize(size)) {
      throw new VirtqError("QUEUE_SIZE_INVALID", `packed queue size ${size} is not in 1..32768`);
    }
    if (!Number.isSafeInteger(options.ringGpa) || options.ringGpa % 16 !== 0) {
      throw new VirtqError("RING_MISALIGNED", `ringGpa ${options.ringGpa} is not 16-aligned`);
    }
    this.size = size;
    this.#memory = options.memory;
    this.#dma = options.dma;
    this.#rawDma = Object.getPrototypeOf(options.dma) === RawGpaDmaApi.prototype &&
      !["map", "mapNumber", "unmap"].some((k) => Object.hasOwn(options.dma, k));
    this.#mapNum = typeof options.dma.mapNumber === "function";
    this.#fastMap = !this.#rawDma && this.#mapNum;
    this.#unmapPg = hasUnmapPage(options.dma);
    const f = options.features;
    this.#indirectOk = hasFeature(f, VIRTIO_F_INDIRECT_DESC);
    this.#eventIdx = hasFeature(f, VIRTIO_F_EVENT_IDX);
    this.#inOrder = hasFeature(f, VIRTIO_F_IN_ORDER);
    const policy: DriverPolicy = {
      usedLenExceedsCapacity: "reject",
      indirect: "auto",
      ...options.policy,
    };
    this.#clamp = policy.usedLenExceedsCapacity === "clamp";
    this.#indirectMode = policy.indirect === "never" ? 0 : policy.indirect === "always" ? 1 : 2;
    const lay = packedRingLayout(size, this.#indirectOk);
    this.ringLayout = lay;
    this.#ringGpa = options.ringGpa;
    let region;
    try {
      region = this.#memory.resolve(options.ringGpa, lay.totalBytes);
    } catch (cause) {
      throw new VirtqError(
        "RING_UNMAPPED",
        `driver ring memory (${lay.totalBytes} bytes at GPA ${options.ringGpa}) is not inside ` +
          `one guest memory region`,
        { cause },
      );
    }
    const base = region.bytes.byteOffset + (options.ringGpa - region.gpa);
    const buf = region.bytes.buffer;
    new Uint8Array(buf, base, lay.totalBytes).fill(0); // §2.8: the ring starts zeroed
    this.#d32 = new Uint32Array(buf, base, lay.descBytes / 4);
    this.#d16 = new Uint16Array(buf, base, lay.descBytes / 2);
    this.#drvEv = new Uint16Array(buf, base + lay.driverEventOffset, 2);
    this.#devEv = new Uint16Array(buf, base + lay.deviceEventOffset, 2);
    this.#arenaGpa = options.ringGpa + lay.indirectOffset;
    const arenaBytes = this.#indirectOk ? size * lay.indirectTableBytes : 0;
    this.#a32 = new Uint32Array(buf, base + lay.indirectOffset, arenaBytes / 4);
    this.#a16 = new Uint16Array(buf, base + lay.indirectOffset, arenaBytes / 2);
    try {
      this.#ringBus = this.#dma.mapCoherent(options.ringGpa, lay.ringBytes);
    } catch (cause) {
      throw new VirtqError("DMA_MAP_FAILED", "cannot map the ring areas coherently", { cause });
    }
    this.addresses = Object.freeze({
      descAddr: this.#ringBus,
      driverAddr: u64Add(this.#ringBus, lay.driverEventOffset) as U64,
      deviceAddr: u64Add(this.#ringBus, lay.deviceEventOffset) as U64,
    });
    this.#numFree = size;
    this.#exBus = new Float64Array(size);
    this.#exBusBig = new Array(size).fill(undefined);
    this.#exLen = new Uint32Array(size);
    this.#exDir = new Uint8Array(size);
    this.#exNext = new Int32Array(size);
    this.#tokens = new Array(size).fill(undefined);
    this.#idInfo = new Int32Array(ID_STRIDE * size);
    this.#idCap = new Float64Array(size);
    const tn = this.#indirectOk ? size * PACKED_DRIVER_INDIRECT_MAX : 0;
    this.#tblBus = new Float64Array(tn);
    this.#tblBusBig = new Array(tn).fill(undefined);
    this.#tblLen = new Uint32Array(tn);
    this.#tblDir = new Uint8Array(tn);
    this.#idOut = new Float64Array(size).fill(Infinity);
    this.#fifo = new Int32Array(size);
    this.#initFreeList();
    this.#syncFast();
  }

  /**
   * Recomputes {@link #fastAdd} and {@link #fastUsed} from the state they depend on (cold: at
   * construction, reset and callback mode changes; `#fail` clears both).
   */
  #syncFast(): void {
    const ok = this.#broken === null && !this.#inOrder;
    this.#fastAdd = this.#rawDma && ok;
    this.#fastUsed = (this.#rawDma || this.#fastMap) && ok &&
      this.#cbMode !== RING_EVENT_FLAGS_DESC;
  }

  #initFreeList(): void {
    for (let i = 0; i < this.size; i++) {
      this.#exNext[i] = i + 1;
      this.#idInfo[ID_STRIDE * i + ID_NUM] = 1; // a free ID's ID_NUM is 1
    }
    this.#freeHead = 0;
  }

  /** The error that broke the queue, or `null`. */
  get broken(): VirtqError | null {
    return this.#broken;
  }
  /** Free ring slots. */
  get numFree(): number {
    return this.#numFree;
  }
  /** Buffers added and not yet returned by `getUsed` or `detachUnused`. */
  get outstanding(): number {
    return this.#outstanding;
  }
  /** GPA of the ring memory. */
  get ringGpa(): number {
    return this.#ringGpa;
  }

  /**
   * Adds a buffer (spec §2.8.21): one descriptor per segment linked with `VIRTQ_DESC_F_NEXT`, or
   * one indirect descriptor (§2.8.7) when the policy and `VIRTIO_F_INDIRECT_DESC` allow; readable
   * segments first (Message Framing, §2.8.4). Every descriptor carries the Buffer ID. Nothing is
   * visible to the device until {@link kick}.
   * @throws VirtqError `QUEUE_BROKEN`, `BUFFER_EMPTY` (no segment, or one of length 0),
   * `RING_FULL` (fewer free slots than needed), `DMA_MAP_FAILED` (nothing is left mapped).
   */
  add(readable: SgList, writable: SgList, token: T): void {
    // The commonest add, kept small enough to inline (bytecode: add + #addOneRaw): one segment
    // under RawGpaDmaApi (bus address = GPA), written straight into its slot. Anything else, and
    // every error, takes the general path below.
    if (this.#fastAdd && readable.count + writable.count === 1) {
      const w = readable.count === 0;
      if (this.#addOneRaw(w ? writable : readable, w, token)) return;
    }
    this.#addGeneral(readable, writable, token);
  }

  /**
   * The one segment of `list` under {@link RawGpaDmaApi} (bus address = GPA) as a list of one
   * descriptor in the next slot.
   * @returns `false`, having changed nothing, when the segment is not for this path (`gpa`
   * negative or not a number, `len` 0, the range past 2^52, which RawGpaDmaApi.map refuses) or
   * no slot is free: the general path then adds it or throws.
   */
  #addOneRaw(list: SgList, writable: boolean, token: T): boolean {
    const gpa = list.gpa[0];
    const len = list.len[0];
    // gpa + len <= 2^52, written so that only len (a uint32) takes part in integer arithmetic;
    // constants are literals (TurboFan folds a literal, not a module binding).
    if (!(gpa >= 0 && len !== 0 && gpa <= 4503599627370496 - len) || this.#numFree === 0) {
      return false;
    }
    const id = this.#freeHead;
    const slot = this.#nextAvail;
    const b = slot << 2;
    const d32 = this.#d32;
    d32[b] = gpa; // ToUint32: the low 32 bits
    // a product by 2^-32 is exact and the store truncates: floor(gpa / 2^32) for 0 <= gpa < 2^52
    d32[b + 1] = gpa * 2.3283064365386963e-10;
    d32[b + 2] = len;
    // §2.8.1: AVAIL = the wrap counter, USED its inverse (0x8000 >>> 8 = AVAIL when it is 1);
    // 2 = VIRTQ_DESC_F_WRITE (literals: a module binding costs loads and bytecode here).
    const flags = (0x8000 >>> (this.#availWrap << 3)) | (writable ? 2 : 0);
    // §2.8.21: the first head of a batch is made available last (at kick), later heads now,
    // Buffer ID and flags in one store.
    if (this.#pendHeadSlot >= 0) d32[b + 3] = id | flags << 16;
    else this.#holdHead(slot, id, flags);
    if (slot + 1 !== this.size) this.#nextAvail = slot + 1;
    else this.#availLap();
    // No #exBus / #exLen / #exDir shadow: they only feed unmap calls, and RawGpaDmaApi's unmap
    // is a no-op that #detach skips.
    this.#freeHead = this.#exNext[id];
    this.#tokens[id] = token;
    // One ring slot: ID_NUM is 1 and ID_TBL 0 while free, ID_LAST unused for one descriptor.
    this.#idOut[id] = this.#epoch;
    this.#idCap[id] = writable ? len : 0;
    this.#numFree--;
    this.#outstanding++;
    // No IN_ORDER FIFO: #fastAdd is false under VIRTIO_F_IN_ORDER.
    return true;
  }

  /**
   * The first head of a batch at `slot`: its Buffer ID now, its flags at {@link kick}
   * (§2.8.21). Out of line from {@link #addOneRaw} (once per batch; keeps it small to inline).
   */
  #holdHead(slot: number, id: number, flags: number): void {
    this.#d16[slot * 8 + 6] = id;
    this.#pendHeadSlot = slot;
    this.#pendHeadFlags = flags;
  }

  /** The next avail position wraps to slot 0 and the avail wrap counter flips (§2.8.1). */
  #availLap(): void {
    this.#nextAvail = 0;
    this.#availWrap ^= 1;
  }

  /**
   * Every add but {@link #addOneRaw}'s. It first takes the commonest mapped add itself: one
   * segment mapped with `DmaApi.mapNumber` (not `#rawDma`) as a list of one descriptor in the next
   * slot, {@link #addList}'s direct list for one segment written out as one body (no loop, no
   * bigint branch) with {@link #addOneRaw}'s stores. Anything else (and that add when the segment
   * is empty, no slot is free or `mapNumber` answers -1, having mapped and changed nothing) goes
   * on to {@link #addList}, which adds it or throws as before. One call from `add` for the mapped
   * add (as split's), and over V8's inlining limit
   * (tests/virtio/packed/driver_inline_size_test.ts): never inlined, it is optimised alone with a
   * whole inlining budget for the DMA API's `mapNumber` chain.
   * @throws VirtqError `QUEUE_BROKEN`, `DMA_MAP_FAILED` (`cause` = the DmaMapError, as the list
   * path), and whatever {@link #addList} throws.
   */
  #addGeneral(readable: SgList, writable: SgList, token: T): void {
    if (this.#broken !== null) this.#throwBroken();
    const nr = readable.count;
    if (nr + writable.count === 1 && this.#fastMap) {
      const w = nr === 0;
      const list = w ? writable : readable;
      const gpa = list.gpa[0];
      const len = list.len[0];
      if (len !== 0 && this.#numFree !== 0) {
        const id = this.#freeHead;
        const slot = this.#nextAvail;
        const b = slot << 2;
        const dir = w ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
        let mapped = false;
        // as in #addList, the bus address is used only inside the try block (never tagged)
        try {
          const nb = this.#dma.mapNumber!(gpa, len, dir);
          if (nb >= 0) {
            const d32 = this.#d32;
            d32[b] = nb; // ToUint32: the low 32 bits
            d32[b + 1] = nb * 2.3283064365386963e-10; // floor(nb / 2^32), as in #addOneRaw
            this.#exBus[id] = nb;
            mapped = true;
          }
        } catch (cause) {
          this.#mapFailed(id, 0, gpa, len, cause);
        }
        // mapNumber answered -1 (no number for this mapping): #addList maps segment 0 with map,
        // not asking mapNumber again
        if (!mapped) return this.#addList(readable, writable, token, false);
        this.#d32[b + 2] = len;
        this.#exLen[id] = len;
        this.#exDir[id] = dir;
        // §2.8.1: AVAIL = the wrap counter, USED its inverse; §2.8.21: the first head of a batch
        // is made available last (at kick), later heads now, Buffer ID and flags in one store.
        const flags = (0x8000 >>> (this.#availWrap << 3)) | (w ? VIRTQ_DESC_F_WRITE : 0);
        if (this.#pendHeadSlot >= 0) this.#d32[b + 3] = id | flags << 16;
        else this.#holdHead(slot, id, flags);
        if (slot + 1 !== this.size) this.#nextAvail = slot + 1;
        else this.#availLap();
        this.#freeHead = this.#exNext[id];
        this.#tokens[id] = token;
        // One ring slot: ID_NUM is 1 and ID_TBL 0 while free.
        this.#idOut[id] = this.#epoch;
        this.#idCap[id] = w ? len : 0;
        this.#numFree--;
        this.#outstanding++;
        if (this.#inOrder) this.#fifoPush(id);
        return;
      }
    }
    this.#addList(readable, writable, token, this.#mapNum);
  }

  /**
   * {@link #addGeneral}'s path for any buffer: checks, then an indirect descriptor or a direct
   * list (each segment mapped, `mapNumber` tried first when `num0` for segment 0 and when the DMA
   * API has it for the rest).
   */
  #addList(readable: SgList, writable: SgList, token: T, num0: boolean): void {
    const nr = readable.count;
    const n = nr + writable.count;
    if (n === 0) throw new VirtqError("BUFFER_EMPTY", "no segments");
    // §2.8.7.1: an indirect table, like any list, holds at most Queue Size descriptors.
    const mode = this.#indirectMode;
    const indirect = mode !== 0 && this.#indirectOk && n >= 2 &&
      n <= PACKED_DRIVER_INDIRECT_MAX && n <= this.size && (mode === 1 || this.#numFree < n);
    if (indirect) {
      this.#addIndirectBuffer(readable, writable, n, token);
      return;
    }
    if (this.#numFree < n) this.#ringFull(n);
    const id = this.#freeHead;
    // A zero-length segment throws BUFFER_EMPTY after unmapping what was mapped, leaving
    // nothing added.
    let cap = 0;
    {
      // Direct list: map each segment, record it in the shadow and write its descriptor but
      // its flags. Flags are written only once every mapping succeeded, the head's last
      // (§2.8.21): a failure midway leaves every slot's flags as they were.
      const size = this.size;
      const d32 = this.#d32;
      const d16 = this.#d16;
      const dma = this.#dma;
      const mapNum = this.#mapNum;
      const exBus = this.#exBus, exLen = this.#exLen, exDir = this.#exDir;
      const exNext = this.#exNext;
      const head = this.#nextAvail;
      let slot = head;
      let wrap = this.#availWrap;
      let headFlags = 0;
      let e = id;
      let last = id;
      for (let i = 0; i < n; i++) {
        let gpa: number, len: number, dir: DmaDirection, flags: number;
        if (i < nr) {
          gpa = readable.gpa[i];
          len = readable.len[i];
          dir = DMA_TO_DEVICE;
          flags = 0;
        } else {
          gpa = writable.gpa[i - nr];
          len = writable.len[i - nr];
          dir = DMA_FROM_DEVICE;
          flags = VIRTQ_DESC_F_WRITE;
          cap += len;
        }
        if (len === 0) this.#emptySegment(id, i);
        const b = slot << 2;
        // Everything that uses the bus address stays inside the try block, so that it is never
        // materialised as a tagged value across the exception edge.
        try {
          // mapNumber keeps the bus address an untagged double (no heap number >= 2^31)
          const nb = (i === 0 ? num0 : mapNum) ? dma.mapNumber!(gpa, len, dir) : -1;
          if (nb >= 0) {
            const lo = nb >>> 0;
            d32[b] = lo;
            d32[b + 1] = (nb - lo) / TWO_POW_32;
            exBus[e] = nb;
          } else this.#mapEntry(e, b, gpa, len, dir);
        } catch (cause) {
          this.#mapFailed(id, i, gpa, len, cause);
        }
        d32[b + 2] = len;
        d16[b * 2 + 6] = id;
        exLen[e] = len;
        exDir[e] = dir;
        // §2.8.1: AVAIL = the wrap counter, USED its inverse.
        if (i === 0) headFlags = flags | (wrap !== 0 ? 0x0080 : 0x8000) | (n > 1 ? 1 : 0);
        last = e;
        e = exNext[e];
        if (++slot === size) {
          slot = 0;
          wrap ^= 1;
        }
      }
      // Every mapping succeeded: the flags of the non-head descriptors now (a failure above left
      // them untouched, so a stale "available" descriptor never looks like a chain head), the
      // head's last (§2.8.21).
      if (n > 1) {
        let s = head;
        let sw = this.#availWrap;
        for (let i = 1; i < n; i++) {
          if (++s === size) {
            s = 0;
            sw ^= 1;
          }
          d16[s * 8 + 7] = (sw !== 0 ? 0x0080 : 0x8000) | (i < n - 1 ? VIRTQ_DESC_F_NEXT : 0) |
            (i >= nr ? VIRTQ_DESC_F_WRITE : 0);
        }
      }
      this.#freeHead = exNext[last];
      if (n > 1) this.#idInfo[ID_STRIDE * id + ID_LAST] = last;
      // §2.8.21: the first head of a batch is made available last (at kick); later heads now.
      if (this.#pendHeadSlot < 0) {
        this.#pendHeadSlot = head;
        this.#pendHeadFlags = headFlags;
      } else d16[head * 8 + 7] = headFlags;
      this.#nextAvail = slot;
      this.#availWrap = wrap;
    }
    this.#tokens[id] = token;
    this.#idInfo[ID_STRIDE * id + ID_NUM] = n; // ID_TBL is 0 while free
    this.#idOut[id] = this.#epoch;
    this.#idCap[id] = cap;
    this.#numFree -= n;
    this.#outstanding++;
    if (this.#inOrder) this.#fifoPush(id);
  }

  /** Out of line from {@link add}: a buffer as one indirect descriptor (§2.8.7). */
  #addIndirectBuffer(readable: SgList, writable: SgList, n: number, token: T): void {
    if (this.#numFree < 1) this.#ringFull(1);
    const id = this.#freeHead;
    // A zero-length segment throws BUFFER_EMPTY after unmapping what was mapped, leaving
    // nothing added.
    const cap = this.#addIndirect(id, readable, writable, n);
    this.#tokens[id] = token;
    const w = ID_STRIDE * id;
    this.#idInfo[w + ID_NUM] = 1;
    this.#idInfo[w + ID_TBL] = n;
    this.#idOut[id] = this.#epoch;
    this.#idCap[id] = cap;
    this.#numFree -= 1;
    this.#outstanding++;
    if (this.#inOrder) this.#fifoPush(id);
  }

  /** IN_ORDER: `id` joins the order in which buffers were made available. */
  #fifoPush(id: number): void {
    let t = this.#fifoHead + this.#fifoCount;
    if (t >= this.size) t -= this.size;
    this.#fifo[t] = id;
    this.#fifoCount++;
  }

  #throwBroken(): never {
    throw new VirtqError("QUEUE_BROKEN", `queue broken by ${this.#broken!.code}`);
  }

  #ringFull(need: number): never {
    throw new VirtqError("RING_FULL", `${need} slots needed, ${this.#numFree} free`);
  }

  #emptySegment(id: number, i: number): never {
    this.#undoDirect(id, i);
    throw new VirtqError("BUFFER_EMPTY", `segment ${i} has length 0`, { index: i });
  }

  #mapFailed(id: number, i: number, gpa: number, len: number, cause: unknown): never {
    this.#undoDirect(id, i);
    throw new VirtqError("DMA_MAP_FAILED", `${len} bytes at GPA ${gpa}`, { cause });
  }

  /**
   * Out of line from {@link add}: maps a segment through `DmaApi.map` (no number-only fast path,
   * or it declined) into shadow entry `e` and the address words of the descriptor at u32 index
   * `b`. Throws what `map` throws.
   */
  #mapEntry(e: number, b: number, gpa: number, len: number, dir: DmaDirection): void {
    const bus = this.#dma.map(gpa, len, dir);
    if (typeof bus === "number") {
      this.#exBus[e] = bus;
      const lo = bus >>> 0;
      this.#d32[b] = lo;
      this.#d32[b + 1] = (bus - lo) / TWO_POW_32;
    } else {
      this.#exBus[e] = NaN;
      this.#exBusBig[e] = bus;
      this.#d32[b] = u64Lo(bus);
      this.#d32[b + 1] = u64Hi(bus);
    }
  }

  #map(gpa: number, len: number, dir: DmaDirection): U64 {
    try {
      return this.#dma.map(gpa, len, dir);
    } catch (cause) {
      throw new VirtqError("DMA_MAP_FAILED", `${len} bytes at GPA ${gpa}`, { cause });
    }
  }

  /** Undoes a direct add that failed at segment `failed`: unmaps (no flags were written). */
  #undoDirect(id: number, failed: number): void {
    this.#unmapEntries(id, failed);
  }

  #addIndirect(id: number, readable: SgList, writable: SgList, n: number): number {
    const nr = readable.count;
    const tbase = id * PACKED_DRIVER_INDIRECT_MAX;
    let cap = 0;
    for (let i = 0; i < n; i++) {
      const w = i >= nr;
      const gpa = w ? writable.gpa[i - nr] : readable.gpa[i];
      const len = w ? writable.len[i - nr] : readable.len[i];
      const dir = w ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
      if (len === 0) {
        this.#unmapTable(tbase, i);
        throw new VirtqError("BUFFER_EMPTY", `segment ${i} has length 0`, { index: i });
      }
      if (w) cap += len;
      let bus: U64;
      try {
        bus = this.#map(gpa, len, dir);
      } catch (err) {
        this.#unmapTable(tbase, i);
        throw err;
      }
      const t = tbase + i;
      if (typeof bus === "number") this.#tblBus[t] = bus;
      else {
        this.#tblBus[t] = NaN;
        this.#tblBusBig[t] = bus;
      }
      this.#tblLen[t] = len;
      this.#tblDir[t] = dir;
      // Table entry (§2.8.7): addr, len, flags = WRITE only; Buffer ID reserved (0).
      const o32 = t * 4;
      this.#a32[o32] = typeof bus === "number" ? bus >>> 0 : u64Lo(bus);
      this.#a32[o32 + 1] = typeof bus === "number" ? Math.floor(bus / TWO_POW_32) : u64Hi(bus);
      this.#a32[o32 + 2] = len;
      this.#a16[t * 8 + 6] = 0;
      this.#a16[t * 8 + 7] = w ? VIRTQ_DESC_F_WRITE : 0;
    }
    const tlen = n * 16;
    const tgpa = this.#arenaGpa + tbase * 16;
    let tbus: U64;
    try {
      tbus = this.#map(tgpa, tlen, DMA_TO_DEVICE);
    } catch (err) {
      this.#unmapTable(tbase, n);
      throw err;
    }
    this.#setEntry(id, tbus, tlen, DMA_TO_DEVICE);
    this.#freeHead = this.#exNext[id];
    const avail = this.#availWrap !== 0 ? 0x0080 : 0x8000;
    const slot = this.#nextAvail;
    this.#writeDesc(
      slot,
      tbus,
      tlen,
      id,
      avail | VIRTQ_DESC_F_INDIRECT,
      true,
    );
    if (slot + 1 === this.size) {
      this.#nextAvail = 0;
      this.#availWrap ^= 1;
    } else this.#nextAvail = slot + 1;
    return cap;
  }

  #setEntry(e: number, bus: U64, len: number, dir: number): void {
    if (typeof bus === "number") this.#exBus[e] = bus;
    else {
      this.#exBus[e] = NaN;
      this.#exBusBig[e] = bus;
    }
    this.#exLen[e] = len;
    this.#exDir[e] = dir;
  }

  #writeDesc(
    slot: number,
    bus: U64,
    len: number,
    id: number,
    flags: number,
    head: boolean,
  ): void {
    const b = slot * 4;
    if (typeof bus === "number") {
      this.#d32[b] = bus >>> 0;
      this.#d32[b + 1] = Math.floor(bus / TWO_POW_32);
    } else {
      this.#d32[b] = u64Lo(bus);
      this.#d32[b + 1] = u64Hi(bus);
    }
    this.#d32[b + 2] = len;
    this.#d16[slot * 8 + 6] = id;
    if (!head) {
      this.#d16[slot * 8 + 7] = flags;
    } else if (this.#pendHeadSlot < 0) {
      // §2.8.21: the first head of a batch is made available last (at kick).
      this.#pendHeadSlot = slot;
      this.#pendHeadFlags = flags;
    } else {
      this.#d16[slot * 8 + 7] = flags;
    }
  }

  /** Unmaps the first `count` shadow entries of the list starting at `id` (an add that failed). */
  #unmapEntries(id: number, count: number): void {
    let e = id;
    for (let i = 0; i < count; i++) {
      this.#unmapEntry(e);
      e = this.#exNext[e];
    }
  }

  /**
   * Unmaps shadow entry `e` (not RawGpaDmaApi): `unmapPage` with page number and offset when the
   * DMA API has it, else `unmap`; a number and a bigint bus address call apart, so the number is
   * never boxed into a U64 value (only the index crosses a call).
   */
  #unmapEntry(e: number): void {
    const b = this.#exBus[e];
    if (b !== b) {
      this.#dma.unmap(this.#exBusBig[e]!, this.#exLen[e], this.#exDir[e] as DmaDirection);
    } else if (this.#unmapPg) {
      // page number + offset: small integers, never a heap number even out of line (2^30+)
      const pfn = Math.floor(b / 4096);
      this.#dma.unmapPage!(pfn, b - pfn * 4096, this.#exLen[e], this.#exDir[e] as DmaDirection);
    } else this.#dma.unmap(b, this.#exLen[e], this.#exDir[e] as DmaDirection);
  }

  #unmapTable(tbase: number, count: number): void {
    for (let i = 0; i < count; i++) {
      const t = tbase + i;
      const b = this.#tblBus[t];
      this.#dma.unmap(
        b === b ? b : this.#tblBusBig[t]!,
        this.#tblLen[t],
        this.#tblDir[t] as DmaDirection,
      );
    }
  }

  /**
   * Publishes the buffers added since the last kick by writing the first head's flags last
   * (§2.8.21), and tells whether to send an available buffer notification per the device event
   * suppression structure (§2.8.10): `RING_EVENT_FLAGS_DISABLE` no; `RING_EVENT_FLAGS_DESC` (with
   * `VIRTIO_F_EVENT_IDX`) when the batch passed `off`/`wrap`; otherwise (ENABLE, reserved 3) yes.
   * Returns `false` when nothing was added or the queue is broken.
   */
  kick(): boolean {
    // Every add makes a head pending until the next kick: none pending, nothing was added.
    const head = this.#pendHeadSlot;
    if (head < 0 || this.#broken !== null) return false;
    this.#epoch++;
    this.#d16[head * 8 + 7] = this.#pendHeadFlags;
    this.#pendHeadSlot = -1;
    return this.#kicked();
  }

  /**
   * Out of line from {@link kick}, once the batch is published: notes the kick position and
   * tells whether the device wants a notification (§2.8.10).
   */
  #kicked(): boolean {
    // Ring slots added since the last kick: 1..size, the positions a lap apart when the wrap
    // counter flipped (at most size slots are free, so it flips at most once).
    const nextAvail = this.#nextAvail;
    const advanced = nextAvail - this.#kickAvail +
      (this.#availWrap !== this.#kickWrap ? this.size : 0);
    this.#kickAvail = nextAvail;
    this.#kickWrap = this.#availWrap;
    const flags = this.#devEv[1] & PACKED_EVENT_FLAGS_MASK;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags === RING_EVENT_FLAGS_DESC && this.#eventIdx) {
      return packedNeedEvent(this.#devEv[0], nextAvail, advanced, this.#availWrap, this.size);
    }
    return true;
  }

  #fail(code: VirtqErrorCode, detail: string, index: number): never {
    const e = new VirtqError(code, detail, { index });
    this.#broken = e;
    this.#fastAdd = false;
    this.#fastUsed = false;
    throw e;
  }

  /**
   * Returns the token of the next used buffer and sets {@link usedLen}, or `undefined` when the
   * descriptor at the driver's used position is not used yet (flags not AVAIL == USED == the used
   * wrap counter, #43) or the queue is broken. `len` is taken as 0 when the used descriptor's
   * `VIRTQ_DESC_F_WRITE` is clear (it is reserved then, §2.8.5).
   * @throws VirtqError `USED_ID_OUT_OF_RANGE`, `USED_ID_NOT_HEAD`, `USED_LEN_EXCEEDS_CAPACITY`
   * (policy `"reject"`); the queue becomes broken.
   */
  getUsed(): T | undefined {
    // The commonest completion, kept small enough for V8 to inline into the caller's loop
    // (bytecode under 460, with nothing hot left to call): a used descriptor naming a published
    // direct buffer (one descriptor, or a list: #freeList), within its writable capacity, under
    // RawGpaDmaApi (nothing to unmap) or a DMA API with mapNumber (unmapped as #detach does),
    // without IN_ORDER or RING_EVENT_FLAGS_DESC callbacks (#fastUsed, false once broken).
    // Each test is the general path's own; when any fails (every error and every other buffer)
    // #getUsedGeneral decides from the start. Reading first changes nothing (reads have no
    // effect). Literals, not module bindings: a binding costs bytecode and loads here.
    if (this.#fastUsed) {
      const slot = this.#lastUsed;
      const d16 = this.#d16;
      const f = d16[slot * 8 + 7];
      // §2.8.1: used when AVAIL (0x80) == USED (0x8000) == the driver's used wrap counter.
      if ((f & 0x8080) !== 0x8080 * this.#usedWrap) return undefined;
      const id = d16[slot * 8 + 6];
      // §2.8.5: len is reserved (taken as 0) without VIRTQ_DESC_F_WRITE (2).
      const len = (f & 2) !== 0 ? this.#d32[slot * 4 + 2] : 0;
      const info = this.#idInfo;
      const w = 3 * id;
      // Published (an ID past the table reads undefined: false), no indirect table (ID_TBL 0),
      // len within the writable capacity.
      if (this.#idOut[id] < this.#epoch && info[w + 1] === 0 && len <= this.#idCap[id]) {
        // #getUsedGeneral's retirement: usedLen, then #detach (unmapping first, under a
        // mapping DMA API), the shadow entries back on the free list.
        this.usedLen = len;
        const num = info[w]; // ID_NUM: ring slots
        if (!this.#rawDma) this.#unmapHead(id, num);
        if (num === 1) this.#exNext[id] = this.#freeHead;
        else this.#freeList(w);
        this.#freeHead = id;
        this.#idOut[id] = Infinity;
        this.#numFree += num;
        this.#outstanding--;
        // §2.8.1: the used position skips the list's slots (the driver's count, #43)
        const u = slot + num;
        if (u < this.size) this.#lastUsed = u;
        else this.#usedLap(u);
        const tokens = this.#tokens;
        const token = tokens[id];
        tokens[id] = undefined;
        return token;
      }
    }
    return this.#getUsedGeneral();
  }

  /**
   * The used position `u` (past the ring end, below twice its size) wraps to the start and the
   * used wrap counter flips (§2.8.1).
   */
  #usedLap(u: number): void {
    this.#lastUsed = u - this.size;
    this.#usedWrap ^= 1;
  }

  /**
   * {@link getUsed}'s fast path for a list of several descriptors (info word `w` = 3 * ID): its
   * last shadow entry links to the free list head; ID_NUM back to 1 (a free ID's).
   */
  #freeList(w: number): void {
    const info = this.#idInfo;
    this.#exNext[info[w + ID_LAST]] = this.#freeHead;
    info[w + ID_NUM] = 1;
  }

  /**
   * {@link getUsed} for any buffer, DMA API and feature set, with every check, and the in-order
   * batches (§2.8.9). One function (the used descriptor's checks and the retirement), larger
   * than V8's inlining limit on purpose: never inlined into getUsed, it keeps getUsed's
   * optimized code to the fast path, so a caller's polling loop can still inline getUsed under
   * any DMA API (tests/virtio/packed/driver_inline_size_test.ts).
   */
  #getUsedGeneral(): T | undefined {
    if (this.#broken !== null) return undefined;
    let id: number;
    if (this.#batchEnd >= 0) id = this.#nextInOrder();
    else {
      const slot = this.#lastUsed;
      const f = this.#d16[slot * 8 + 7];
      // §2.8.1: used when AVAIL (0x80) == USED (0x8000) == the driver's used wrap counter.
      if ((f & 0x8080) !== 0x8080 * this.#usedWrap) return undefined;
      id = this.#d16[slot * 8 + 6];
      let len = (f & VIRTQ_DESC_F_WRITE) !== 0 ? this.#d32[slot * 4 + 2] : 0;
      // §2.8.5 / Linux BAD_RING "id %u out of range", "id %u is not a head!" (#38, #39).
      if (id >= this.size) this.#idOutOfRange(slot, id);
      // Free (Infinity), or added since the last kick: not a published head.
      if (this.#idOut[id] >= this.#epoch) this.#notOutstanding(slot, id);
      const cap = this.#idCap[id];
      if (len > cap) len = this.#overCapacity(slot, id, len, cap);
      if (this.#inOrder) {
        this.#batchEnd = id;
        this.#batchLen = len;
        id = this.#nextInOrder();
      } else this.usedLen = len;
    }
    // Retire `id`: free it, skip its ring slots (the driver's own count, #43).
    const num = this.#idInfo[ID_STRIDE * id + ID_NUM];
    this.#detach(id);
    let u = this.#lastUsed + num;
    if (u >= this.size) {
      u -= this.size;
      this.#usedWrap ^= 1;
    }
    this.#lastUsed = u;
    if (this.#cbMode === RING_EVENT_FLAGS_DESC && this.#batchEnd < 0) {
      this.#drvEv[0] = packedEventOffWrap(u, this.#usedWrap);
    }
    const token = this.#tokens[id];
    this.#tokens[id] = undefined;
    return token;
  }

  #idOutOfRange(slot: number, id: number): never {
    this.#fail("USED_ID_OUT_OF_RANGE", `used slot ${slot}: buffer ID ${id} >= ${this.size}`, slot);
  }

  #notOutstanding(slot: number, id: number): never {
    this.#fail("USED_ID_NOT_HEAD", `used slot ${slot}: buffer ID ${id} is not outstanding`, slot);
  }

  /** A used `len` above the writable capacity: `cap` under policy "clamp", else the error. */
  #overCapacity(slot: number, id: number, len: number, cap: number): number {
    if (!this.#clamp) {
      this.#fail(
        "USED_LEN_EXCEEDS_CAPACITY",
        `used slot ${slot}: buffer ID ${id} len ${len} > writable ${cap}`,
        slot,
      );
    }
    return cap;
  }

  /**
   * IN_ORDER: the next buffer of the batch being retired, in the order buffers were made
   * available, and its used length (§2.8.9: buffers before the one the used descriptor names
   * are fully used).
   */
  #nextInOrder(): number {
    const id = this.#fifo[this.#fifoHead];
    if (++this.#fifoHead === this.size) this.#fifoHead = 0;
    this.#fifoCount--;
    if (id === this.#batchEnd) {
      this.usedLen = this.#batchLen;
      this.#batchEnd = -1;
    } else {
      // §2.8.9: buffers retired by a later buffer's used descriptor are fully used.
      this.usedLen = this.#idCap[id];
    }
    return id;
  }

  /** Unmaps a buffer's mappings and frees its ID and shadow entries (driver-private state only). */
  #detach(id: number): void {
    const info = this.#idInfo;
    const w = ID_STRIDE * id;
    const num = info[w + ID_NUM];
    // A direct buffer under RawGpaDmaApi has nothing to unmap (its unmap is a no-op): only the
    // free below, so this stays small enough to inline into getUsed.
    if (info[w + ID_TBL] > 0 || !this.#rawDma) this.#unmapBuffer(id, num);
    // The buffer's shadow entries keep their links: they go back to the free list whole.
    if (num === 1) this.#exNext[id] = this.#freeHead;
    else {
      this.#exNext[info[w + ID_LAST]] = this.#freeHead;
      info[w + ID_NUM] = 1; // a free ID's ID_NUM is 1 (one-descriptor fast adds need not write it)
    }
    this.#freeHead = id;
    this.#idOut[id] = Infinity;
    this.#numFree += num;
    this.#outstanding--;
  }

  /**
   * getUsed's unmapping (a buffer with no indirect table, not RawGpaDmaApi): one descriptor
   * straight to {@link #unmapEntry}, without #unmapBuffer's table check and loop.
   */
  #unmapHead(id: number, num: number): void {
    if (num === 1) this.#unmapEntry(id);
    else this.#unmapBuffer(id, num);
  }

  /** {@link #detach}'s unmapping: the indirect table, then (not RawGpaDmaApi) each entry. */
  #unmapBuffer(id: number, num: number): void {
    const info = this.#idInfo;
    const w = ID_STRIDE * id;
    const tn = info[w + ID_TBL];
    if (tn > 0) {
      this.#unmapTable(id * PACKED_DRIVER_INDIRECT_MAX, tn);
      info[w + ID_TBL] = 0; // a free ID's ID_TBL is 0 (direct adds do not write it)
    }
    // RawGpaDmaApi: unmap is a no-op, so no bus address is materialised for the call.
    if (!this.#rawDma) this.#unmapEntries(id, num);
  }

  /**
   * Asks for used buffer notifications (§2.8.10): `RING_EVENT_FLAGS_DESC` at the driver's used
   * position with `VIRTIO_F_EVENT_IDX` (kept current by `getUsed`), else
   * `RING_EVENT_FLAGS_ENABLE`.
   * @returns `false` when a used buffer is already pending (the caller should poll again).
   */
  enableCallbacks(): boolean {
    if (this.#eventIdx) {
      this.#cbMode = RING_EVENT_FLAGS_DESC;
      this.#drvEv[0] = packedEventOffWrap(this.#lastUsed, this.#usedWrap);
      this.#drvEv[1] = RING_EVENT_FLAGS_DESC;
    } else {
      this.#cbMode = RING_EVENT_FLAGS_ENABLE;
      this.#drvEv[1] = RING_EVENT_FLAGS_ENABLE;
    }
    this.#syncFast();
    if (this.#batchEnd >= 0) return false;
    const f = this.#d16[this.#lastUsed * 8 + 7];
    return !(((f >>> 7) & 1) === ((f >>> 15) & 1) && ((f >>> 15) & 1) === this.#usedWrap);
  }

  /** Asks for no used buffer notifications (`RING_EVENT_FLAGS_DISABLE`, §2.8.10). */
  disableCallbacks(): void {
    this.#cbMode = RING_EVENT_FLAGS_DISABLE;
    this.#drvEv[1] = RING_EVENT_FLAGS_DISABLE;
    this.#syncFast();
  }

  /**
   * After a device reset: unmaps and returns the token of one buffer still outstanding (added,
   * published or not), freeing its ID, or `undefined` when none is left (Linux
   * `virtqueue_detach_unused_buf`).
   */
  detachUnused(): T | undefined {
    for (let id = 0; id < this.size; id++) {
      if (this.#idOut[id] !== Infinity) {
        const token = this.#tokens[id];
        this.#tokens[id] = undefined;
        this.#detach(id);
        return token;
      }
    }
    return undefined;
  }

  /**
   * Re-initialises the ring after a device reset once every buffer was detached: zeroes the ring
   * areas, restarts positions and both wrap counters at 1 (spec §2.8.1), the ID free list and the
   * broken state. The ring bus addresses stay the same.
   * @throws Error when buffers are still outstanding (call {@link detachUnused} first).
   */
  resetRings(): void {
    if (this.#outstanding !== 0) {
      throw new Error(`resetRings: ${this.#outstanding} buffers still outstanding`);
    }
    this.#restart();
    this.#broken = null;
    this.#syncFast();
  }

  #restart(): void {
    this.#d32.fill(0);
    this.#drvEv.fill(0);
    this.#devEv.fill(0);
    this.#nextAvail = 0;
    this.#availWrap = 1;
    this.#lastUsed = 0;
    this.#usedWrap = 1;
    this.#numFree = this.size;
    this.#pendHeadSlot = -1;
    this.#kickAvail = 0;
    this.#kickWrap = 1;
    this.#fifoHead = 0;
    this.#fifoCount = 0;
    this.#batchEnd = -1;
    this.#cbMode = RING_EVENT_FLAGS_ENABLE;
    this.#initFreeList();
  }

  /**
   * VIRTIO_F_NOTIFICATION_DATA (spec §2.9): the ring offset of the next descriptor this driver
   * will make available (bits 0-14) and its wrap counter (bit 15); call it right after
   * {@link kick}, as the notification follows the publication.
   */
  notificationNext(): number {
    return this.#nextAvail | (this.#availWrap << 15);
  }
}
