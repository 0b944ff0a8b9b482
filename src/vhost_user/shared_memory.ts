/**
 * Guest RAM shared with a vhost-user back-end: each region is a memfd mapped `MAP_SHARED` into
 * this process, and the project's {@link GuestMemory} is built over those very bytes, so the
 * driver queues write rings and buffers the back-end reads without a copy.
 *
 * The back-end gets the regions with SET_MEM_TABLE (guest address, size, user address = our
 * mmap address, mmap offset 0, and the memfd). Without ACCESS_PLATFORM it reads descriptor
 * addresses as guest addresses and ring addresses as user addresses (vhost-user.rst "A vring
 * address description").
 *
 * @module
 */

import { GuestMemory } from "../memory/mod.ts";
import type { VhostUserMemoryRegion } from "./codec.ts";
import { VhostUserError } from "./errors.ts";
import { closeFd, createMemfdMapping, type Mapping, unmap } from "./libc.ts";

/** One region of {@link SharedGuestMemory}. */
export interface SharedRegionSpec {
  /** Guest address (GPA), a multiple of 4096. */
  gpa: number;
  /** Size in bytes, a positive multiple of 4096. */
  size: number;
  /** Label (also the memfd name). */
  name?: string;
}

/** One mapped region. */
export interface SharedRegion {
  /** GPA of the first byte. */
  readonly gpa: number;
  /** Size in bytes. */
  readonly size: number;
  /** The memfd (handed to the back-end). */
  readonly fd: number;
  /** Our user address of the first byte. */
  readonly userAddr: bigint;
  /** The mapping. */
  readonly mapping: Mapping;
}

/** Guest memory whose regions are memfds shared with a back-end. */
export class SharedGuestMemory {
  /** The project's guest memory over the shared bytes. */
  readonly memory: GuestMemory;
  /** The regions, by ascending GPA. */
  readonly regions: readonly SharedRegion[];
  #closed = false;

  private constructor(memory: GuestMemory, regions: SharedRegion[]) {
    this.memory = memory;
    this.regions = regions;
  }

  /**
   * Creates and maps the regions (at most 8: one SET_MEM_TABLE).
   * @throws RangeError for misaligned or overlapping regions (as {@link GuestMemory});
   * VhostUserError `BAD_ARGUMENT` for more than 8 regions, `SYSCALL_FAILED`, `FFI_UNAVAILABLE`.
   */
  static create(specs: readonly SharedRegionSpec[]): SharedGuestMemory {
    if (specs.length === 0 || specs.length > 8) {
      throw new VhostUserError("BAD_ARGUMENT", `${specs.length} memory regions (1 to 8)`);
    }
    const regions: SharedRegion[] = [];
    try {
      const memory = new GuestMemory();
      for (const s of [...specs].sort((a, b) => a.gpa - b.gpa)) {
        const name = s.name ?? `vhost-ram@0x${s.gpa.toString(16)}`;
        // validate before mapping anything
        if (s.size <= 0 || s.size % 4096 !== 0 || s.gpa % 4096 !== 0) {
          throw new RangeError(`region ${name}: gpa and size must be multiples of 4096`);
        }
        const m = createMemfdMapping(s.size, name);
        regions.push({ gpa: s.gpa, size: s.size, fd: m.fd, userAddr: m.addr, mapping: m });
        memory.addRegion({ gpa: s.gpa, size: s.size, backing: m.buffer, name });
      }
      return new SharedGuestMemory(memory, regions);
    } catch (e) {
      for (const r of regions) {
        unmap(r.mapping);
        closeFd(r.fd);
      }
      throw e;
    }
  }

  /** The memory-table entries for SET_MEM_TABLE, one per region, in order. */
  memTable(): VhostUserMemoryRegion[] {
    return this.regions.map((r) => ({
      guestPhysAddr: BigInt(r.gpa),
      memorySize: BigInt(r.size),
      userspaceAddr: r.userAddr,
      mmapOffset: 0n,
    }));
  }

  /** The memfds for SET_MEM_TABLE, in region order. */
  fds(): number[] {
    return this.regions.map((r) => r.fd);
  }

  /**
   * Our user address of `gpa`, or `-1n` when no region holds it (a hostile address stays
   * representable: the caller decides whether to send it).
   */
  userAddrOf(gpa: number): bigint {
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa < r.gpa + r.size) return r.userAddr + BigInt(gpa - r.gpa);
    }
    return -1n;
  }

  /** The region holding `gpa`, or `undefined`. */
  regionOf(gpa: number): SharedRegion | undefined {
    return this.regions.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size);
  }

  /** True once {@link SharedGuestMemory.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Unmaps the regions and closes the memfds (idempotent). The {@link GuestMemory} and every
   * view over it must not be touched afterwards: the bytes are gone.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const r of this.regions) {
      unmap(r.mapping);
      closeFd(r.fd);
    }
  }
}
