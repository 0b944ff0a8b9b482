/**
 * The driver's DMA API without an IOMMU: Linux dma-direct (DMA_MODES.md M1/M2, §2.3).
 *
 * `map` computes the bus address (identity, or through the device's `bus_dma_region` windows:
 * `dma_start + (P - cpu_start)`), then checks `dma_capable()`: the last byte must not exceed the
 * DMA mask (or the bus limit). A buffer no window covers fails with `window`; one above the mask
 * with `mask` (Linux warns "DMA addr ... overflow" and returns `DMA_MAPPING_ERROR` when swiotlb
 * is not active; compose with `SwiotlbDmaApi` `{ force: false }` to model the bounce fallback).
 *
 * dma-direct keeps no record of mappings, so unmap and sync are no-ops and never fail, exactly
 * like the kernel (whose DMA-API debugging is a separate option).
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { hex64, type U64, U64_MAX } from "../memory/u64.ts";
import { DmaMapError } from "./errors.ts";
import type { DmaApi, DmaDirection } from "./types.ts";
import { type DmaWindow, DmaWindowTable } from "./window.ts";

/** A driver-side API that can turn one of its bus addresses back into a GPA (`dma_to_phys`). */
export interface ReversibleDmaApi extends DmaApi {
  /**
   * The GPA that bus address `bus` of a live mapping refers to, or -1 when it refers to none
   * (Linux `dma_to_phys` / `iommu_iova_to_phys`). Used by bounce buffering to find its slot.
   */
  busToGpa(bus: U64): number;
}

/** Options of a {@link DirectDmaApi}. */
export interface DirectDmaApiOptions {
  /** Mode name, default `"direct"`. */
  name?: string;
  /** The device's DMA mask (highest addressable bus address), default 2^64 - 1. */
  mask?: U64;
  /** Bus limit of the interconnect (`bus_dma_limit`); the effective limit is the lower one. */
  busLimit?: U64;
  /** Offset windows (`dma-ranges`); absent = identity (bus = GPA). */
  windows?: readonly DmaWindow[] | DmaWindowTable;
  /**
   * Guest memory, to refuse coherent mappings of private (confidential-guest) memory with
   * `private-memory`. Optional.
   */
  memory?: GuestMemory;
}

/** dma-direct: identity or fixed-offset windows, checked against the DMA mask. */
export class DirectDmaApi implements ReversibleDmaApi {
  /** Mode name. */
  readonly name: string;
  /** Effective limit: `min(mask, busLimit)`, exact. */
  readonly limit: U64;
  /** The windows, or `null` for identity. */
  readonly windows: DmaWindowTable | null;
  readonly #limitNum: number; // the limit as a number, or +Infinity when it is >= 2^53 - 1
  readonly #memory: GuestMemory | null;

  /**
   * Creates the API.
   * @throws RangeError for a mask outside u64 or an invalid window.
   */
  constructor(options: DirectDmaApiOptions = {}) {
    this.name = options.name ?? "direct";
    const mask = BigInt(options.mask ?? U64_MAX);
    const bl = BigInt(options.busLimit ?? U64_MAX);
    if (mask < 0n || mask > U64_MAX || bl < 0n || bl > U64_MAX) {
      throw new RangeError(`DMA mask ${hex64(mask)} / bus limit must be u64`);
    }
    const lim = mask < bl ? mask : bl;
    this.limit = lim <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(lim) : lim;
    this.#limitNum = typeof this.limit === "number" ? this.limit : Infinity;
    const w = options.windows;
    this.windows = w === undefined ? null : w instanceof DmaWindowTable ? w : new DmaWindowTable(w);
    this.#memory = options.memory ?? null;
  }

  /**
   * `dma_map_single`: the bus address of `[gpa, gpa + length)`.
   * @throws DmaMapError `window` (no window covers the whole buffer) or `mask` (ends above the
   * DMA mask / bus limit, or beyond 2^52).
   */
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > 2 ** 52) {
      throw new DmaMapError("mask", gpa, length, this.name, "beyond 2^52");
    }
    let bus: U64 = gpa;
    if (this.windows !== null) {
      const b = this.windows.physToBus(gpa, length > 0 ? length : 1);
      if (b === null) {
        throw new DmaMapError("window", gpa, length, this.name, "no DMA window covers the buffer");
      }
      bus = b;
    }
    const last = length > 0 ? length - 1 : 0;
    if (typeof bus === "number") {
      if (bus + last > this.#limitNum) this.#overflow(gpa, length, bus);
    } else if (bus + BigInt(last) > BigInt(this.limit)) this.#overflow(gpa, length, bus);
    return bus;
  }

  /**
   * True when `map(gpa, length)` would succeed: no `mask` or `window` refusal (as Linux alpha's
   * `pci_map_single_1` tests the direct window before falling back to scatter-gather). Never throws.
   */
  accepts(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > 2 ** 52) return false;
    let bus = gpa;
    if (this.windows !== null) {
      // number-only lookup: `physToBus`'s number | bigint | null result would box a bus
      // address at or above 2^31 (a window at 2 GiB) on every call
      const b = this.windows.physToBusNumber(gpa, length > 0 ? length : 1);
      if (b === -1) return false;
      if (b === -2) return this.#acceptsBig(gpa, length);
      bus = b;
    }
    return !(bus + (length > 0 ? length - 1 : 0) > this.#limitNum);
  }

  // A window bus address at or above 2^53: compared exactly as a bigint.
  #acceptsBig(gpa: number, length: number): boolean {
    const bus = this.windows!.physToBus(gpa, length > 0 ? length : 1);
    if (bus === null) return false;
    const last = length > 0 ? length - 1 : 0;
    if (typeof bus === "number") return !(bus + last > this.#limitNum);
    return !(bus + BigInt(last) > BigInt(this.limit));
  }

  /** {@link DmaApi.mapNumber}: `map` for bus addresses below 2^53, else -1 (nothing mapped). */
  mapNumber(gpa: number, length: number, _dir: DmaDirection): number {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > 2 ** 52) {
      throw new DmaMapError("mask", gpa, length, this.name, "beyond 2^52");
    }
    let bus = gpa;
    if (this.windows !== null) {
      const b = this.windows.physToBusNumber(gpa, length > 0 ? length : 1);
      if (b === -2) return -1;
      if (b < 0) {
        throw new DmaMapError("window", gpa, length, this.name, "no DMA window covers the buffer");
      }
      bus = b;
    }
    if (bus + (length > 0 ? length - 1 : 0) > this.#limitNum) this.#overflow(gpa, length, bus);
    return bus;
  }

  #overflow(gpa: number, length: number, bus: U64): never {
    throw new DmaMapError(
      "mask",
      gpa,
      length,
      this.name,
      `DMA addr ${hex64(bus)}+${length} overflows mask ${hex64(this.limit)}`,
    );
  }

  /** No-op (dma-direct tracks nothing). */
  unmap(_bus: U64, _length: number, _dir: DmaDirection): void {}
  /** {@link DmaApi.unmapPage}: a no-op, as `unmap`. */
  unmapPage(_pfn: number, _offset: number, _length: number, _dir: DmaDirection): void {}
  /** No-op (coherent platform: nothing to sync). */
  syncForCpu(_bus: U64, _length: number, _dir: DmaDirection): void {}
  /** No-op. */
  syncForDevice(_bus: U64, _length: number, _dir: DmaDirection): void {}

  /**
   * `dma_alloc_coherent` for memory the caller placed at `gpa`.
   * @throws DmaMapError `private-memory` when `memory` was given and the range is private, or
   * as {@link DirectDmaApi.map}.
   */
  mapCoherent(gpa: number, length: number): U64 {
    if (this.#memory !== null) {
      const r = this.#memory.regionAt(gpa);
      if (r !== undefined && r.private) {
        throw new DmaMapError("private-memory", gpa, length, this.name, `${r.name} is private`);
      }
    }
    return this.map(gpa, length, 0);
  }
  /** No-op. */
  unmapCoherent(_bus: U64, _length: number): void {}

  /** `dma_to_phys`: the GPA of `bus` (identity or through the windows), or -1. */
  busToGpa(bus: U64): number {
    if (this.windows === null) return typeof bus === "number" ? bus : -1;
    const t = SCRATCH;
    return this.windows.busToPhys(bus, 1, t) ? t.gpa : -1;
  }
}

const SCRATCH = { gpa: 0, length: 0 };
