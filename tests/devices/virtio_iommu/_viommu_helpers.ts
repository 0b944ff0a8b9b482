// Test helpers for the virtio-iommu tests: hand-built chains and a list-backed DeviceQueue.
import { Chain, GuestMemory, type VirtqError } from "../../../src/mod.ts";
import type { DeviceQueue } from "../../../src/virtio/queue.ts";
import type { VirtioIommuDevice } from "../../../src/mod.ts";

export const REQ_GPA = 0x1000;
export const TAIL_GPA = 0x8000;

export function newMemory(): GuestMemory {
  return GuestMemory.flat(0x40000);
}

/** Result of one request sent through a hand-built chain. */
export interface Sent {
  used: number;
  status: number;
  writable: Uint8Array;
}

/** Sends `readable` with a writable part of `writableLen` bytes straight to processRequest. */
export function send(
  dev: VirtioIommuDevice,
  mem: GuestMemory,
  readable: Uint8Array,
  writableLen = 4,
): Sent {
  mem.fill(TAIL_GPA, Math.max(writableLen, 4), 0xee);
  mem.write(REQ_GPA, readable);
  const c = new Chain(mem);
  c.reset(0, 0);
  if (readable.length > 0) c.addReadable(REQ_GPA, readable.length);
  if (writableLen > 0) c.addWritable(TAIL_GPA, writableLen);
  const used = dev.processRequest(c);
  const writable = mem.view(TAIL_GPA, writableLen).slice();
  return { used, status: writableLen >= 4 ? writable[writableLen - 4] : -1, writable };
}

/** A DeviceQueue over a list of hand-built chains (for the eventq before the rings land). */
export class ListDeviceQueue implements DeviceQueue {
  readonly layout = "split" as const;
  readonly size = 256;
  broken: VirtqError | null = null;
  inFlight = 0;
  ready = true;
  readonly available: Chain[] = [];
  readonly used: { chain: Chain; len: number }[] = [];
  flushes = 0;
  pop(): Chain | null {
    const c = this.available.shift() ?? null;
    if (c !== null) this.inFlight++;
    return c;
  }
  push(chain: Chain, written: number): void {
    this.inFlight--;
    this.used.push({ chain, len: written });
  }
  flush(): boolean {
    this.flushes++;
    return true;
  }
  setNotifications(enabled: boolean): boolean {
    return enabled && this.available.length > 0;
  }
  reset(): void {
    this.available.length = 0;
    this.ready = false;
  }
  activate(): void {
    this.ready = true;
  }
  /** Offers one device-writable buffer of `len` bytes at `gpa`. */
  offerWritable(mem: GuestMemory, gpa: number, len: number): void {
    const c = new Chain(mem);
    c.reset(this.available.length, 0);
    c.addWritable(gpa, len);
    this.available.push(c);
  }
}
