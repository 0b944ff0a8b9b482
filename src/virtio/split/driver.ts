/**
 * The driver side of a split virtqueue (spec §2.7.13 "Supplying Buffers to The Device",
 * §2.7.14 "Receiving Used Buffers From The Device"), hardened against a hostile device the way
 * Linux `virtio_ring.c` is: the driver keeps a private shadow of every chain it exposed (token,
 * descriptor count, writable capacity, mapped bus addresses; Linux `desc_extra`/`desc_state`)
 * and never reads the shared descriptor table back (HOSTILE_INPUTS #42).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { hex64, TWO_POW_32, type U64, u64Hi, u64Lo } from "../../memory/u64.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaApi,
  type DmaDirection,
  hasUnmapPage,
} from "../../dma/types.ts";
import { RawGpaDmaApi } from "../../dma/identity.ts";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
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
  alignUp,
  isValidSplitQueueSize,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  splitAvailRingSize,
  splitDescTableSize,
  splitUsedRingSize,
} from "./layout.ts";

/** The default {@link DriverPolicy}: reject over-long used lengths, indirect tables on `auto`. */
export const DEFAULT_DRIVER_POLICY: Readonly<DriverPolicy> = Object.freeze({
  usedLenExceedsCapacity: "reject",
  indirect: "auto",
});

/** Most entries of one indirect table the split driver builds (per-head arena slot). */
export const SPLIT_INDIRECT_MAX_ENTRIES = 16;

/**
 * Where a split driver places its areas inside the memory at `ringGpa` (offsets in bytes).
 * The indirect-table arena holds one slot of `indirectEntries` descriptors per head.
 */
export interface SplitDriverPlacement {
  /** Offset of the descriptor table (0). */
  readonly descOffset: number;
  /** Offset of the available ring. */
  readonly availOffset: number;
  /** Offset of the used ring (4-aligned). */
  readonly usedOffset: number;
  /** Offset of the indirect-table arena (16-aligned). */
  readonly arenaOffset: number;
  /** Descriptors per arena slot: `min(size, 16)` with `VIRTIO_F_INDIRECT_DESC`, else 0. */
  readonly indirectEntries: number;
  /** Total bytes, rounded up to a multiple of 4096. */
  readonly totalBytes: number;
}

/**
 * The placement of a split driver queue's areas (see {@link SplitDriverPlacement}).
 * @param size Queue Size (power of 2, 1..32768).
 * @param features negotiated features; the arena exists only with `VIRTIO_F_INDIRECT_DESC`.
 * @throws RangeError for an invalid Queue Size.
 */
export function splitDriverPlacement(size: number, features: bigint): SplitDriverPlacement {
  if (!isValidSplitQueueSize(size)) {
    throw new RangeError(`split queue size ${size} must be a power of 2 in 1..32768`);
  }
  const availOffset = splitDescTableSize(size);
  const usedOffset = alignUp(availOffset + splitAvailRingSize(size), SPLIT_USED_ALIGN);
  const arenaOffset = alignUp(usedOffset + splitUsedRingSize(size), SPLIT_DESC_ALIGN);
  const indirectEntries = hasFeature(features, VIRTIO_F_INDIRECT_DESC)
    ? Math.min(size, SPLIT_INDIRECT_MAX_ENTRIES)
    : 0;
  const end = arenaOffset + size * indirectEntries * VIRTQ_DESC_SIZE;
  return {
    descOffset: 0,
    availOffset,
    usedOffset,
    arenaOffset,
    indirectEntries,
    totalBytes: alignUp(end, 4096),
  };
}

/**
 * Bytes of guest memory a {@link SplitDriverQueue} needs at `ringGpa`: the three ring areas and
 * the indirect-table arena, rounded up to whole 4096-byte pages.
 * @param size Queue Size (power of 2, 1..32768).
 * @param features negotiated features (`VIRTIO_F_INDIRECT_DESC` adds the arena).
 * @throws RangeError for an invalid Queue Size.
 */
export function splitDriverFootprint(size: number, features: bigint): number {
  return splitDriverPlacement(size, features).totalBytes;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const INDIRECT_NEVER = 0;
const INDIRECT_ALWAYS = 1;
const INDIRECT_AUTO = 2;

/**
 * Driver side of a split virtqueue, implementing {@link DriverQueue}.
 *
 * Rings live at `ringGpa` (layout {@link splitDriverPlacement}), mapped with
 * `DmaApi.mapCoherent`; buffers are mapped with `DmaApi.map` on `add` and unmapped when
 * returned by `getUsed`/`detachUnused`; indirect tables are built in the arena and mapped
 * `DMA_TO_DEVICE`. Descriptors come from a private FIFO free list, so with `VIRTIO_F_IN_ORDER`
 * they are used sequentially (`next` = x + 1, §2.7.5.2).
 *
 * Errors from `getUsed` (driver side; the queue becomes broken, no token is returned twice):
 * `USED_IDX_JUMP`, `USED_ID_OUT_OF_RANGE`, `USED_ID_NOT_HEAD`, `USED_LEN_EXCEEDS_CAPACITY`.
 * Host requirement: a little-endian host (typed-array views are native-endian).
 */
export class SplitDriverQueue<T> implements DriverQueue<T> {
  /** Always `"split"`. */
  readonly layout: RingLayout = "split";
  /** Queue Size in descriptors. */
  readonly size: number;
  /** Guest memory holding rings and buffers. */
  readonly memory: GuestMemory;
  /** Effective policy. */
  readonly policy: Readonly<DriverPolicy>;
  /** Bus addresses of the ring areas (from `DmaApi.mapCoherent`). */
  readonly addresses: VirtqueueAddresses;
  /** Placement of the areas relative to `ringGpa`. */
  readonly placement: SplitDriverPlacement;
  /** GPA of the ring memory. */
  readonly ringGpa: number;

  readonly #dma: DmaApi;
  /** The DMA API has the number-only fast path {@link DmaApi.mapNumber}. */
  readonly #mapNum: boolean;
  /** The DMA API has the number-only unmap {@link DmaApi.unmapPage}. */
  readonly #unmapPg: boolean;
  /**
   * True when the DMA API is exactly {@link RawGpaDmaApi} (no own `map` / `unmap` either): map
   * returns the GPA, unmap is a no-op, so the shadow needs no mapping record.
   */
  readonly #rawDma: boolean;
  /** `#rawDma` and not broken: `add` may take its one-segment fast path. */
  #fastAdd: boolean;
  /** Not `#rawDma`, with `DmaApi.mapNumber`: a one-segment add is {@link #addGeneral}'s own. */
  readonly #fastMap: boolean;
  /**
   * Without IN_ORDER, under RawGpaDmaApi or a DMA API with `mapNumber` (the ones ring drivers run
   * on; a wrapper without it keeps the general path, the reference the fast path is tested
   * against): `getUsed` may take its one-descriptor fast path.
   */
  readonly #fastUsed: boolean;
  readonly #mask: number;
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  readonly #indirectMode: number;
  readonly #clamp: boolean;
  readonly #slotEntries: number;
  readonly #arenaGpa: number;

  readonly #ringBytes: Uint8Array;
  readonly #desc32: Uint32Array;
  readonly #avail16: Uint16Array;
  readonly #used32: Uint32Array;
  readonly #used16: Uint16Array;
  readonly #arena32: Uint32Array;
  readonly #usedEventIdx: number;
  readonly #availEventIdx: number;

  // Free list (private; never read from the shared table).
  readonly #freeNext: Uint16Array;
  #freeHead = 0;
  #freeTail = 0;
  #numFree: number;

  // Shadow per head.
  /** Token per outstanding head; `null` when free (keeps the array's elements tagged). */
  readonly #tokens: (T | null)[];
  /**
   * One word per head: 0 when the head is not outstanding, else
   * `descriptors << 1 | indirect` (direct chain: its descriptor count; indirect: 1 descriptor,
   * bit 0 set). One load tells `getUsed` whether the id is a head, how many descriptors to
   * free and how to unmap them.
   */
  readonly #headState: Uint32Array;
  readonly #cap: Float64Array;
  readonly #segCount: Uint16Array;
  readonly #indTableBus: U64[];
  // Shadow per descriptor (direct chains).
  /** Bus address of each direct descriptor's mapping; NaN when it is a bigint (see below). */
  readonly #extraBus: Float64Array;
  /** Bus addresses above 2^53 - 1 (rare: DDW windows, Xen grants), by descriptor. */
  readonly #extraBusBig: (bigint | undefined)[];
  readonly #extraLen: Uint32Array;
  readonly #extraDir: Uint8Array;
  /** Last descriptor of each direct chain of more than one descriptor (else the head itself). */
  readonly #chainTail: Uint16Array;
  // Shadow per indirect slot entry.
  readonly #indBus: U64[];
  readonly #indLen: Uint32Array;
  readonly #indDir: Uint8Array;

  // In-order: heads in add order.
  readonly #order: Uint16Array;
  #orderFront = 0;
  #orderBack = 0;
  #batchLast = -1;
  #batchLen = 0;

  #availIdx = 0;
  #kickedIdx = 0;
  #lastUsed = 0;
  #outstanding = 0;
  #usedLen = 0;
  /** The used element id last loaded by an empty {@link getUsed} (a prefetch; never read). */
  #peek = 0;
  #broken: VirtqError | null = null;

  /**
   * Creates the queue and initialises its rings (zeroed, used `flags` 0 as §2.7.8 requires).
   * @param opts memory, DMA API, Queue Size, features, ring GPA, policy.
   * @throws VirtqError `QUEUE_SIZE_INVALID` (not a power of 2 in 1..32768, Linux "Bad virtqueue
   * length"), `RING_MISALIGNED` (`ringGpa` not 16-aligned), `RING_UNMAPPED` (the footprint is
   * not inside one guest memory region), `DMA_MAP_FAILED` (a coherent mapping failed).
   */
  constructor(opts: DriverQueueOptions) {
    const size = opts.size;
    if (!isValidSplitQueueSize(size)) {
      throw new VirtqError(
        "QUEUE_SIZE_INVALID",
        `split queue size ${size} is not a power of 2 in 1..32768`,
      );
    }
    if (!LITTLE_ENDIAN) throw new Error("SplitDriverQueue requires a little-endian host");
    if (!Number.isSafeInteger(opts.ringGpa) || opts.ringGpa % SPLIT_DESC_ALIGN !== 0) {
      throw new VirtqError("RING_MISALIGNED", `ringGpa ${opts.ringGpa} is not 16-byte aligned`);
    }
    this.size = size;
    this.#mask = size - 1;
    this.memory = opts.memory;
    this.#dma = opts.dma;
    this.#mapNum = typeof opts.dma.mapNumber === "function";
    this.#unmapPg = hasUnmapPage(opts.dma);
    this.#rawDma = Object.getPrototypeOf(opts.dma) === RawGpaDmaApi.prototype &&
      !["map", "mapNumber", "unmap"].some((k) => Object.hasOwn(opts.dma, k));
    this.#fastMap = !this.#rawDma && this.#mapNum;
    this.#fastAdd = this.#rawDma;
    this.ringGpa = opts.ringGpa;
    this.policy = Object.freeze({ ...DEFAULT_DRIVER_POLICY, ...opts.policy });
    this.#clamp = this.policy.usedLenExceedsCapacity === "clamp";
    this.#eventIdx = hasFeature(opts.features, VIRTIO_F_EVENT_IDX);
    this.#inOrder = hasFeature(opts.features, VIRTIO_F_IN_ORDER);
    this.#fastUsed = (this.#rawDma || this.#mapNum) && !this.#inOrder;
    const pl = splitDriverPlacement(size, opts.features);
    this.placement = pl;
    this.#slotEntries = pl.indirectEntries;
    this.#indirectMode = pl.indirectEntries === 0 || this.policy.indirect === "never"
      ? INDIRECT_NEVER
      : this.policy.indirect === "always"
      ? INDIRECT_ALWAYS
      : INDIRECT_AUTO;

    let bytes: Uint8Array;
    try {
      bytes = opts.memory.view(opts.ringGpa, pl.totalBytes);
    } catch (cause) {
      throw new VirtqError(
        "RING_UNMAPPED",
        `driver ring memory (${pl.totalBytes} bytes at GPA ${hex64(opts.ringGpa)}) is not ` +
          `inside one guest memory region`,
        { cause },
      );
    }
    this.#ringBytes = bytes;
    const buf = bytes.buffer, off = bytes.byteOffset;
    this.#desc32 = new Uint32Array(buf, off, 4 * size);
    this.#avail16 = new Uint16Array(buf, off + pl.availOffset, 3 + size);
    this.#used32 = new Uint32Array(buf, off + pl.usedOffset, 1 + 2 * size);
    this.#used16 = new Uint16Array(buf, off + pl.usedOffset, 3 + 4 * size);
    this.#arena32 = new Uint32Array(buf, off + pl.arenaOffset, 4 * size * pl.indirectEntries);
    this.#arenaGpa = opts.ringGpa + pl.arenaOffset;
    this.#usedEventIdx = 2 + size;
    this.#availEventIdx = 2 + 4 * size;
    bytes.fill(0, 0, pl.arenaOffset);

    // Ring areas: long-lived shared memory (dma_alloc_coherent).
    const areas: [number, number][] = [
      [opts.ringGpa, splitDescTableSize(size)],
      [opts.ringGpa + pl.availOffset, splitAvailRingSize(size)],
      [opts.ringGpa + pl.usedOffset, splitUsedRingSize(size)],
    ];
    const bus: U64[] = [];
    try {
      for (const [g, n] of areas) bus.push(opts.dma.mapCoherent(g, n));
    } catch (cause) {
      for (let i = 0; i < bus.length; i++) opts.dma.unmapCoherent(bus[i], areas[i][1]);
      throw new VirtqError("DMA_MAP_FAILED", `cannot map the ring areas coherently`, { cause });
    }
    this.addresses = Object.freeze({ descAddr: bus[0], driverAddr: bus[1], deviceAddr: bus[2] });

    this.#freeNext = new Uint16Array(size);
    this.#numFree = size;
    // null, not undefined: an array filled with undefined may become a double array (V8 holds
    // undefined there as a NaN pattern), so each number token is unboxed on add and re-tagged on
    // getUsed; null keeps the array tagged (about 3 ns less per add + getUsed)
    this.#tokens = new Array(size).fill(null);
    this.#headState = new Uint32Array(size);
    this.#cap = new Float64Array(size);
    this.#segCount = new Uint16Array(size);
    this.#indTableBus = new Array(size).fill(0);
    this.#extraBus = new Float64Array(size);
    this.#extraBusBig = new Array(size).fill(undefined);
    this.#extraLen = new Uint32Array(size);
    this.#extraDir = new Uint8Array(size);
    this.#chainTail = new Uint16Array(size);
    const ni = size * pl.indirectEntries;
    this.#indBus = new Array(ni).fill(0);
    this.#indLen = new Uint32Array(ni);
    this.#indDir = new Uint8Array(ni);
    this.#order = new Uint16Array(size);
    this.#initFreeList();
  }

  #initFreeList(): void {
    const size = this.size;
    for (let i = 0; i < size; i++) this.#freeNext[i] = (i + 1) & this.#mask;
    this.#freeHead = 0;
    this.#freeTail = size - 1;
    this.#numFree = size;
  }

  /** The error that broke the queue, or `null`. */
  get broken(): VirtqError | null {
    return this.#broken;
  }
  /** Free descriptors. */
  get numFree(): number {
    return this.#numFree;
  }
  /** Buffers added and not yet returned. */
  get outstanding(): number {
    return this.#outstanding;
  }
  /** Written length (bytes) reported for the token last returned by `getUsed`. */
  get usedLen(): number {
    return this.#usedLen;
  }
  /** The driver's avail `idx` shadow (u16; published by `kick`). */
  get availIdx(): number {
    return this.#availIdx;
  }
  /** The driver's `last_used_idx` (u16). */
  get lastUsedIdx(): number {
    return this.#lastUsed;
  }

  #fail(code: VirtqErrorCode, detail: string, index?: number): never {
    const e = new VirtqError(code, detail, { index });
    this.#broken = e;
    this.#fastAdd = false;
    throw e;
  }

  /**
   * Adds a buffer (spec §2.7.13): readable segments then writable ones, as one chain of direct
   * descriptors or one indirect descriptor (policy `indirect`, needs `VIRTIO_F_INDIRECT_DESC`
   * and at most 16 segments). Every segment is mapped with `DmaApi.map` first; on a mapping
   * failure everything mapped is unmapped and nothing is added.
   * @throws VirtqError `QUEUE_BROKEN`, `BUFFER_EMPTY` (no segment, or a zero-length one),
   * `RING_FULL` (not enough free descriptors), `DMA_MAP_FAILED` (`cause` = the DmaMapError).
   */
  add(readable: SgList, writable: SgList, token: T): void {
    // The commonest add, kept small enough to inline (bytecode: add + #addOneRaw): one segment
    // under RawGpaDmaApi (bus address = GPA), written straight into the head descriptor.
    // Anything else, and every error, takes the general path below, unchanged. (A one-segment
    // add under a DMA API with mapNumber is dispatched there, not here: any bytecode added to
    // add costs the raw path, measured 2-3% on split identity.)
    if (this.#fastAdd && readable.count + writable.count === 1) {
      const w = readable.count === 0;
      if (this.#addOneRaw(w ? writable : readable, w, token)) return;
    }
    this.#addGeneral(readable, writable, token);
  }

  /**
   * Every add but {@link add}'s raw one-segment path. First the mapped one-segment add: one
   * segment mapped with `DmaApi.mapNumber` into the head descriptor and published,
   * {@link #addDirect} and {@link #publish} for one segment written out as one body (no loop, no
   * bigint branch). The bus address never leaves this function (stored into the descriptor and
   * the shadow here). Anything else (and that add when the segment is empty, no descriptor is
   * free or `mapNumber` answers -1, having mapped and changed nothing) goes on to
   * {@link #addList}, which adds it or throws as before. One call from `add` for the mapped add,
   * and kept over V8's inlining limit (460 bytes of bytecode; `#publish` and `#pushOrder` written
   * out, guarded by `driver_inline_size_test.ts`): never inlined, it is optimised alone with a
   * whole inlining budget (920 bytes) for the DMA API's `mapNumber` chain (window-iommu: 832
   * bytes). Inlined into a busy caller, part of that chain was left out of line and returned bus
   * addresses at or above 2^31 as heap numbers (10-20 B/chain).
   * @throws VirtqError `QUEUE_BROKEN`, `DMA_MAP_FAILED` (`cause` = the DmaMapError, as
   * {@link #addDirect}), and whatever {@link #addList} throws.
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
        const head = this.#freeHead;
        const dir = w ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
        const w4 = head << 2;
        let mapped = false;
        // as in #addDirect, the bus address is used only inside the try block (never tagged)
        try {
          const bus = this.#dma.mapNumber!(gpa, len, dir);
          if (bus >= 0) {
            const d32 = this.#desc32;
            d32[w4] = bus; // ToUint32: the low 32 bits
            d32[w4 + 1] = bus * 2.3283064365386963e-10; // floor(bus / 2^32), as in #addOneRaw
            this.#extraBus[head] = bus;
            mapped = true;
          }
        } catch (cause) {
          this.#mapFailed(head, 0, gpa, len, cause);
        }
        // mapNumber answered -1 (no number for this mapping): #addList maps segment 0 with map,
        // not asking mapNumber again
        if (!mapped) return this.#addList(readable, writable, token, false);
        const d32 = this.#desc32;
        d32[w4 + 2] = len;
        d32[w4 + 3] = w ? VIRTQ_DESC_F_WRITE : 0;
        this.#extraLen[head] = len;
        this.#extraDir[head] = dir;
        this.#freeHead = this.#freeNext[head];
        this.#numFree--;
        this.#headState[head] = 1 << 1; // one direct descriptor
        this.#chainTail[head] = head;
        this.#cap[head] = w ? len : 0;
        // #publish written out: inlined as a call, its bytecode would count against this
        // method's inlining budget, which the DMA API's mapNumber chain needs whole
        this.#tokens[head] = token;
        const ai = this.#availIdx;
        this.#avail16[2 + (ai & this.#mask)] = head;
        this.#availIdx = (ai + 1) & 0xffff;
        this.#outstanding++;
        if (this.#inOrder) {
          this.#order[this.#orderBack] = head; // #pushOrder
          this.#orderBack = (this.#orderBack + 1) & this.#mask;
        }
        return;
      }
    }
    this.#addList(readable, writable, token, this.#mapNum);
  }

  /**
   * {@link #addGeneral}'s path for any buffer: checks, then an indirect descriptor or a chain of
   * direct descriptors (each segment mapped, `mapNumber` tried first when `num0` for segment 0
   * and when the DMA API has it for the rest).
   */
  #addList(readable: SgList, writable: SgList, token: T, num0: boolean): void {
    const nr = readable.count;
    const total = nr + writable.count;
    if (total === 0) throw new VirtqError("BUFFER_EMPTY", "add() with no segments");
    const mode = this.#indirectMode;
    let head: number;
    if (
      mode !== INDIRECT_NEVER && total >= 2 && total <= this.#slotEntries &&
      (mode === INDIRECT_ALWAYS || this.#numFree < total)
    ) {
      if (this.#numFree < 1) this.#ringFull(1);
      head = this.#addIndirect(readable, writable, nr, total);
    } else head = this.#addDirect(readable, writable, nr, total, num0);
    this.#publish(head, token);
  }

  /** Records `token` for `head` and places the head in the next available ring entry. */
  #publish(head: number, token: T): void {
    this.#tokens[head] = token;
    const ai = this.#availIdx;
    this.#avail16[2 + (ai & this.#mask)] = head;
    this.#availIdx = (ai + 1) & 0xffff;
    this.#outstanding++;
    if (this.#inOrder) this.#pushOrder(head);
  }

  /** IN_ORDER: `head` is the newest buffer in add order. */
  #pushOrder(head: number): void {
    this.#order[this.#orderBack] = head;
    this.#orderBack = (this.#orderBack + 1) & this.#mask;
  }

  /**
   * The one segment of `list` under {@link RawGpaDmaApi} (bus address = GPA) into the head
   * descriptor, published as {@link #publish} does (written out here: one inlined body).
   * @returns `false`, having changed nothing, when the segment is not for this path (`gpa`
   * negative or not a number, `len` 0, the range past 2^52, which RawGpaDmaApi.map refuses) or
   * no descriptor is free: the general path then adds it or throws.
   */
  #addOneRaw(list: SgList, writable: boolean, token: T): boolean {
    const gpa = list.gpa[0];
    const len = list.len[0];
    // gpa + len <= 2^52 (RawGpaDmaApi refuses a range ending above it), written so that only len
    // (a uint32) takes part in integer arithmetic: a sum would make TurboFan check that gpa (a
    // double) is an integer first. This path spells its constants as literals: TurboFan folds a
    // literal, while a module binding is a context load and a number-kind check on every call.
    if (!(gpa >= 0 && len !== 0 && gpa <= 4503599627370496 - len) || this.#numFree === 0) {
      return false;
    }
    const head = this.#freeHead;
    const d32 = this.#desc32;
    const w4 = head << 2;
    d32[w4] = gpa; // ToUint32: the low 32 bits
    // a product by 2^-32 is exact, and the store truncates (ToUint32): floor(gpa / 2^32) for
    // 0 <= gpa < 2^52, with no division and no Math.floor
    d32[w4 + 1] = gpa * 2.3283064365386963e-10;
    d32[w4 + 2] = len;
    d32[w4 + 3] = writable ? VIRTQ_DESC_F_WRITE : 0;
    // No #extraBus / #extraLen / #extraDir shadow: they only feed unmap calls, and
    // RawGpaDmaApi's unmap is a no-op that #release skips (three typed-array stores are ~10% of
    // an add + kick + getUsed cycle).
    this.#freeHead = this.#freeNext[head];
    this.#numFree--;
    this.#headState[head] = 1 << 1; // one direct descriptor: the chain's tail is the head
    this.#cap[head] = writable ? len : 0;
    this.#tokens[head] = token;
    const ai = this.#availIdx;
    this.#avail16[2 + (ai & this.#mask)] = head;
    this.#availIdx = (ai + 1) & 0xffff;
    this.#outstanding++;
    if (this.#inOrder) this.#pushOrder(head);
    return true;
  }

  /**
   * A chain of direct descriptors: maps each segment and writes it straight into the next free
   * descriptor (free descriptors are not visible to the device until the head is published).
   * On failure, unmaps what was mapped; the free list is untouched. @returns the head.
   */
  #addDirect(
    readable: SgList,
    writable: SgList,
    nr: number,
    total: number,
    num0: boolean,
  ): number {
    if (this.#numFree < total) this.#ringFull(total);
    const head = this.#freeHead;
    const d32 = this.#desc32;
    const freeNext = this.#freeNext;
    const dma = this.#dma;
    const eBus = this.#extraBus, eLen = this.#extraLen, eDir = this.#extraDir;
    const mapNum = this.#mapNum;
    let d = head;
    let lastD = head;
    let cap = 0;
    for (let i = 0; i < total; i++) {
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
      if (len === 0) this.#emptySegment(head, i);
      const nx = freeNext[d];
      const w4 = d << 2;
      // Everything that uses the bus address stays inside the try block, so that it is
      // never materialised as a tagged value across the exception edge.
      try {
        // mapNumber keeps the bus address an untagged double (no heap number >= 2^31)
        const nb = (i === 0 ? num0 : mapNum) ? dma.mapNumber!(gpa, len, dir) : -1;
        if (nb >= 0) {
          d32[w4] = nb >>> 0;
          d32[w4 + 1] = Math.floor(nb / TWO_POW_32);
          eBus[d] = nb;
        } else {
          const b = dma.map(gpa, len, dir);
          if (typeof b === "number" && b < TWO_POW_32) {
            d32[w4] = b;
            d32[w4 + 1] = 0;
            eBus[d] = b;
          } else if (typeof b === "number") {
            d32[w4] = b >>> 0;
            d32[w4 + 1] = Math.floor(b / TWO_POW_32);
            eBus[d] = b;
          } else {
            d32[w4] = u64Lo(b);
            d32[w4 + 1] = u64Hi(b);
            eBus[d] = NaN;
            this.#extraBusBig[d] = b;
          }
        }
      } catch (cause) {
        this.#mapFailed(head, i, gpa, len, cause);
      }
      d32[w4 + 2] = len;
      d32[w4 + 3] = i < total - 1 ? flags | VIRTQ_DESC_F_NEXT | (nx << 16) : flags;
      eLen[d] = len;
      eDir[d] = dir;
      lastD = d;
      d = nx;
    }
    // Taken descriptors keep their private free-list links: they chain the buffer in order.
    this.#freeHead = d;
    this.#numFree -= total;
    this.#headState[head] = total << 1;
    this.#chainTail[head] = lastD;
    this.#cap[head] = cap;
    return head;
  }

  /** The exact bus address mapped for direct descriptor `d`. */
  #busOf(d: number): U64 {
    const v = this.#extraBus[d];
    return v === v ? v : this.#extraBusBig[d]!;
  }

  #throwBroken(): never {
    throw new VirtqError("QUEUE_BROKEN", `queue is broken: ${this.#broken!.code}`);
  }

  #ringFull(need: number): never {
    throw new VirtqError("RING_FULL", `${need} descriptors needed, ${this.#numFree} free`);
  }

  #emptySegment(head: number, i: number): never {
    this.#unmapDirect(head, i);
    throw new VirtqError("BUFFER_EMPTY", `segment ${i} has length 0`, { index: i });
  }

  #mapFailed(head: number, i: number, gpa: number, len: number, cause: unknown): never {
    this.#unmapDirect(head, i);
    throw new VirtqError(
      "DMA_MAP_FAILED",
      `cannot map segment ${i} (${len} bytes at GPA ${hex64(gpa)})`,
      { index: i, cause },
    );
  }

  /** Builds an indirect table in the head's arena slot, maps it; returns the head. */
  #addIndirect(readable: SgList, writable: SgList, nr: number, total: number): number {
    const head = this.#freeHead;
    const base = head * this.#slotEntries;
    const a32 = this.#arena32;
    const dma = this.#dma;
    let cap = 0;
    for (let i = 0; i < total; i++) {
      const w = i >= nr;
      const list = w ? writable : readable;
      const j = w ? i - nr : i;
      const gpa = list.gpa[j];
      const len = list.len[j];
      if (len === 0) {
        this.#undoIndirect(base, i);
        throw new VirtqError("BUFFER_EMPTY", `segment ${i} has length 0`, { index: i });
      }
      const dir: DmaDirection = w ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
      let b: U64;
      try {
        b = dma.map(gpa, len, dir);
      } catch (cause) {
        this.#undoIndirect(base, i);
        throw new VirtqError(
          "DMA_MAP_FAILED",
          `cannot map segment ${i} (${len} bytes at GPA ${hex64(gpa)})`,
          { index: i, cause },
        );
      }
      if (w) cap += len;
      const wi = (base + i) << 2;
      a32[wi] = u64Lo(b);
      a32[wi + 1] = u64Hi(b);
      a32[wi + 2] = len;
      a32[wi + 3] = (w ? VIRTQ_DESC_F_WRITE : 0) |
        (i < total - 1 ? VIRTQ_DESC_F_NEXT | ((i + 1) << 16) : 0);
      this.#indBus[base + i] = b;
      this.#indLen[base + i] = len;
      this.#indDir[base + i] = dir;
    }
    const tlen = total * VIRTQ_DESC_SIZE;
    let tbus: U64;
    try {
      tbus = dma.map(this.#arenaGpa + base * VIRTQ_DESC_SIZE, tlen, DMA_TO_DEVICE);
    } catch (cause) {
      this.#undoIndirect(base, total);
      throw new VirtqError("DMA_MAP_FAILED", `cannot map the indirect table of head ${head}`, {
        index: head,
        cause,
      });
    }
    const w4 = head << 2;
    const d32 = this.#desc32;
    d32[w4] = u64Lo(tbus);
    d32[w4 + 1] = u64Hi(tbus);
    d32[w4 + 2] = tlen;
    d32[w4 + 3] = VIRTQ_DESC_F_INDIRECT;
    this.#indTableBus[head] = tbus;
    this.#freeHead = this.#freeNext[head];
    this.#numFree--;
    this.#headState[head] = (1 << 1) | 1;
    this.#segCount[head] = total;
    this.#cap[head] = cap;
    return head;
  }

  #undoIndirect(base: number, n: number): void {
    for (let i = 0; i < n; i++) {
      this.#dma.unmap(
        this.#indBus[base + i],
        this.#indLen[base + i],
        this.#indDir[base + i] as DmaDirection,
      );
    }
  }

  /**
   * Publishes the added buffers (avail `idx`, written once; §2.7.13.3) and returns whether the
   * device wants an available buffer notification: with `VIRTIO_F_EVENT_IDX`
   * `vringNeedEvent(avail_event, new, old)`, else `VIRTQ_USED_F_NO_NOTIFY` clear (§2.7.10).
   * Returns `false` when nothing was added since the last kick.
   */
  kick(): boolean {
    const nw = this.#availIdx;
    const old = this.#kickedIdx;
    if (nw === old) return false;
    this.#avail16[1] = nw;
    this.#kickedIdx = nw;
    if (this.#eventIdx) return vringNeedEvent(this.#used16[this.#availEventIdx], nw, old);
    return (this.#used16[0] & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /**
   * Returns the token of the next used buffer and sets {@link usedLen}, or `undefined` when
   * none is pending or the queue is broken (spec §2.7.14). With `VIRTIO_F_IN_ORDER`, a used
   * element naming a later head completes every earlier outstanding buffer (reported with its
   * full writable capacity) in order.
   *
   * IN_ORDER tolerance (documented, deliberate): the used elements between a batch's first slot
   * and the used `idx` are never read or checked. The spec lets the device write one used
   * element per batch, naming the batch's last buffer (§2.7.8 in-order batching), so those slots
   * may hold anything, stale entries included. The batch's extent comes from the named id's
   * place in the driver's own add order (every buffer before it is complete, with its full
   * writable capacity), and each buffer returned still consumes one step of the used `idx`, so
   * a device cannot complete more buffers than it published.
   * @throws VirtqError `USED_IDX_JUMP` (used idx moved by more than the exposed outstanding
   * buffers), `USED_ID_OUT_OF_RANGE`, `USED_ID_NOT_HEAD`, `USED_LEN_EXCEEDS_CAPACITY`
   * (policy `reject`); the queue becomes broken.
   */
  getUsed(): T | undefined {
    if (this.#broken !== null) return undefined;
    const usedIdx = this.#used16[1];
    const last = this.#lastUsed;
    // an empty poll (the spinning caller's commonest call) stays small enough to inline
    if (usedIdx !== last) return this.#takeUsed(usedIdx, last);
    // Also load the used element the device writes next, and keep it (never used: a load
    // whose value is dropped may be removed). A spinning caller thus re-fetches that cache
    // line as soon as the device writes it, alongside the used idx, instead of after seeing
    // the idx move: one cross-core miss off the completion's path. A read has no effect.
    this.#peek = this.#used32[1 + ((last & this.#mask) << 1)];
    return undefined;
  }

  /** {@link getUsed} once used `idx` moved past `last_used_idx`. */
  #takeUsed(usedIdx: number, last: number): T | undefined {
    // The commonest completion, kept small enough for V8 to inline into getUsed and its caller
    // (bytecode under 460; the general path below is 500 and always a call): a used element
    // naming an outstanding one-descriptor direct chain (state word 1 << 1), within its
    // writable capacity, and a used idx the device could reach (#fastUsed: no IN_ORDER; under
    // RawGpaDmaApi, or unmapped as #release does under a DMA API with mapNumber). Each test is
    // the general path's own; when any fails (every error and every other chain),
    // #takeUsedGeneral runs from the start and decides as before. Reading the element first
    // changes nothing: reads have no effect, and the general path reads again.
    if (this.#fastUsed) {
      const w = 1 + ((last & this.#mask) << 1);
      const u32 = this.#used32;
      const id = u32[w];
      const len = u32[w + 1];
      const state = this.#headState;
      // x << 16 >>> 16 is x & 0xffff in fewer bytecode bytes (an immediate over 255 is a
      // 10-byte instruction): the difference keeps this method inside its callers' budget
      // an id past the table reads undefined (not 2): the general path then throws
      if (
        state[id] === 2 && len <= this.#cap[id] &&
        (usedIdx - last) << 16 >>> 16 <=
          this.#outstanding - ((this.#availIdx - this.#kickedIdx) << 16 >>> 16)
      ) {
        const tokens = this.#tokens;
        const token = tokens[id] as T;
        tokens[id] = null;
        state[id] = 0;
        this.#outstanding--;
        // a mapping DMA API: #release's unmap, at the same point
        if (!this.#rawDma) this.#unmapOne(id);
        if (this.#numFree === 0) this.#freeHead = id;
        else this.#freeNext[this.#freeTail] = id;
        this.#freeTail = id;
        this.#numFree++;
        this.#lastUsed = (last + 1) << 16 >>> 16;
        this.#usedLen = len;
        return token;
      }
    }
    return this.#takeUsedGeneral(usedIdx, last);
  }

  /** {@link #takeUsed} for any chain, DMA API and feature set, with every check. */
  #takeUsedGeneral(usedIdx: number, last: number): T | undefined {
    // The device cannot use more buffers than it was shown (HOSTILE_INPUTS #41).
    if (
      ((usedIdx - last) & 0xffff) >
        this.#outstanding - ((this.#availIdx - this.#kickedIdx) & 0xffff)
    ) this.#usedIdxJump(usedIdx, last);
    if (this.#inOrder) return this.#takeUsedInOrder(last);
    const w = 1 + ((last & this.#mask) << 1);
    const id = this.#used32[w];
    let len = this.#used32[w + 1];
    // Linux BAD_RING: "id %u out of range" / "id %u is not a head!" (#38, #39).
    if (id >= this.size) this.#usedIdOutOfRange(id);
    if (this.#headState[id] === 0) this.#usedIdNotHead(id);
    const cap = this.#cap[id];
    if (len > cap) {
      // Policy: reject (default) or clamp (HOSTILE_INPUTS #40).
      if (!this.#clamp) this.#lenExceeds(id, len, cap);
      len = cap;
    }
    const token = this.#release(id);
    this.#lastUsed = (last + 1) & 0xffff;
    this.#usedLen = len;
    return token;
  }

  /** {@link #takeUsed} with `VIRTIO_F_IN_ORDER` (batches, §2.7.8), once the idx was checked. */
  #takeUsedInOrder(last: number): T | undefined {
    let id: number, len: number;
    if (this.#batchLast < 0) {
      const w = 1 + ((last & this.#mask) << 1);
      id = this.#used32[w];
      len = this.#used32[w + 1];
      if (id >= this.size) this.#usedIdOutOfRange(id);
      if (this.#headState[id] === 0) this.#usedIdNotHead(id);
      const front = this.#order[this.#orderFront];
      if (id !== front) {
        // In-order batch (§2.7.8): one element for several buffers, naming the last one;
        // the ones before it are fully used.
        this.#batchLast = id;
        this.#batchLen = len;
        id = front;
        len = this.#cap[front];
      }
    } else {
      id = this.#order[this.#orderFront];
      if (id === this.#batchLast) {
        len = this.#batchLen;
        this.#batchLast = -1;
      } else len = this.#cap[id];
    }
    return this.#finish(id, len);
  }

  #usedIdxJump(usedIdx: number, last: number): never {
    const exposed = this.#outstanding - ((this.#availIdx - this.#kickedIdx) & 0xffff);
    this.#fail(
      "USED_IDX_JUMP",
      `used idx ${usedIdx} is ${(usedIdx - last) & 0xffff} ahead of ${last}, only ${exposed} ` +
        `buffers outstanding`,
      usedIdx,
    );
  }
  #usedIdOutOfRange(id: number): never {
    this.#fail("USED_ID_OUT_OF_RANGE", `used id ${id} out of range (size ${this.size})`, id);
  }
  #usedIdNotHead(id: number): never {
    this.#fail("USED_ID_NOT_HEAD", `used id ${id} is not an outstanding head`, id);
  }

  #finish(id: number, len: number): T | undefined {
    const cap = this.#cap[id];
    if (len > cap) {
      // Policy: reject (default) or clamp (HOSTILE_INPUTS #40).
      if (!this.#clamp) this.#lenExceeds(id, len, cap);
      len = cap;
    }
    const token = this.#release(id);
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    this.#usedLen = len;
    if (this.#inOrder) this.#orderFront = (this.#orderFront + 1) & this.#mask;
    return token;
  }

  /**
   * Unmaps descriptor `d`'s shadow mapping (not RawGpaDmaApi): `unmapPage` with page number and
   * offset when the DMA API has it, else `unmap`; a number and a bigint bus address call apart,
   * so the number is never boxed into a U64 value (only the index crosses a call).
   */
  #unmapOne(d: number): void {
    const v = this.#extraBus[d];
    if (v !== v) {
      this.#dma.unmap(this.#busOf(d), this.#extraLen[d], this.#extraDir[d] as DmaDirection);
    } else if (this.#unmapPg) {
      // page number + offset: small integers, never a heap number even out of line (2^30+)
      const pfn = Math.floor(v / 4096);
      this.#dma.unmapPage!(
        pfn,
        v - pfn * 4096,
        this.#extraLen[d],
        this.#extraDir[d] as DmaDirection,
      );
    } else this.#dma.unmap(v, this.#extraLen[d], this.#extraDir[d] as DmaDirection);
  }

  /** Unmaps the `n` descriptors of the direct chain from `id` (a completion, or an add that failed). */
  #unmapDirect(id: number, n: number): void {
    let d = id;
    for (let i = 0; i < n; i++) {
      this.#unmapOne(d);
      d = this.#freeNext[d];
    }
  }

  #unmapIndirect(id: number): void {
    const dma = this.#dma;
    const segs = this.#segCount[id];
    const base = id * this.#slotEntries;
    for (let i = 0; i < segs; i++) {
      dma.unmap(
        this.#indBus[base + i],
        this.#indLen[base + i],
        this.#indDir[base + i] as DmaDirection,
      );
    }
    dma.unmap(this.#indTableBus[id], segs * VIRTQ_DESC_SIZE, DMA_TO_DEVICE);
  }

  #lenExceeds(id: number, len: number, cap: number): never {
    this.#fail(
      "USED_LEN_EXCEEDS_CAPACITY",
      `used len ${len} for id ${id} exceeds its writable capacity ${cap}`,
      id,
    );
  }

  /** Unmaps and frees a chain using only the private shadow (#42); returns its token. */
  #release(id: number): T | undefined {
    const token = this.#tokens[id] as T; // id is an outstanding head (#38, #39 checked)
    this.#tokens[id] = null;
    const st = this.#headState[id];
    this.#headState[id] = 0;
    this.#outstanding--;
    const n = st >>> 1;
    if ((st & 1) !== 0) this.#unmapIndirect(id);
    else if (!this.#rawDma) this.#unmapDirect(id, n);
    // Append the whole chain (linked in order by the private free-list links) to the tail.
    if (this.#numFree === 0) this.#freeHead = id;
    else this.#freeNext[this.#freeTail] = id;
    this.#freeTail = n === 1 ? id : this.#chainTail[id];
    this.#numFree += n;
    return token;
  }

  /**
   * Asks for used buffer notifications (§2.7.7): with `VIRTIO_F_EVENT_IDX` sets `used_event` to
   * `last_used_idx`, else clears `VIRTQ_AVAIL_F_NO_INTERRUPT`.
   * @returns `false` when used buffers are already pending (the caller should poll again).
   */
  enableCallbacks(): boolean {
    if (this.#eventIdx) this.#avail16[this.#usedEventIdx] = this.#lastUsed;
    else this.#avail16[0] = 0;
    return this.#used16[1] === this.#lastUsed;
  }

  /**
   * Asks for no used buffer notifications: `VIRTQ_AVAIL_F_NO_INTERRUPT` without
   * `VIRTIO_F_EVENT_IDX`; with it (flags must stay 0, §2.7.10) `used_event` is set one behind
   * `last_used_idx`, which the device's used idx cannot pass before it wraps.
   */
  disableCallbacks(): void {
    if (this.#eventIdx) this.#avail16[this.#usedEventIdx] = (this.#lastUsed - 1) & 0xffff;
    else this.#avail16[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
  }

  /**
   * After a device reset: returns the token of one buffer still outstanding (unmapping and
   * freeing it from the private shadow), or `undefined` when none is left (Linux
   * `virtqueue_detach_unused_buf`).
   */
  detachUnused(): T | undefined {
    for (let i = 0; i < this.size; i++) {
      if (this.#headState[i] !== 0) return this.#release(i);
    }
    return undefined;
  }

  /**
   * Re-initialises the rings after a device reset once every buffer was detached: zeroes the
   * ring areas, resets the indices, the free list and the broken state (spec §2.7 queue
   * re-initialisation; §4.1.4.3.2). The ring bus addresses stay the same.
   * @throws Error when buffers are still outstanding (call {@link detachUnused} first).
   */
  resetRings(): void {
    if (this.#outstanding !== 0) {
      throw new Error(`resetRings: ${this.#outstanding} buffers still outstanding`);
    }
    this.#ringBytes.fill(0, 0, this.placement.arenaOffset);
    this.#initFreeList();
    this.#availIdx = 0;
    this.#kickedIdx = 0;
    this.#lastUsed = 0;
    this.#usedLen = 0;
    this.#orderFront = 0;
    this.#orderBack = 0;
    this.#batchLast = -1;
    this.#broken = null;
    this.#fastAdd = this.#rawDma;
  }

  /**
   * VIRTIO_F_NOTIFICATION_DATA (spec §2.9): the avail `idx` last published by {@link kick}
   * (u16: bits 0-14 `next_off`, bit 15 `next_wrap`), the high half of the notification.
   */
  notificationNext(): number {
    return this.#kickedIdx;
  }
}
