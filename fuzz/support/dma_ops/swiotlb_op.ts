/**
 * A bounce-buffer operation for the `dma-modes` target: drives one {@link SwiotlbDmaApi} with a
 * small pool (so that it runs out) over dma-direct with a 24-bit mask, forced or only for buffers
 * the mask cannot reach, and checks a byte model of Linux's swiotlb rules:
 *
 * - a map copies the buffer into its slots (bus address inside the pool), or passes straight
 *   through when not forced and the mask reaches it; it fails `pool-exhausted` only when the pool
 *   lacks room (never on an empty pool), `too-large` above 256 KiB;
 * - a partial `syncForCpu` of [off, off + len) copies exactly those device bytes back, a partial
 *   `syncForDevice` exactly those CPU bytes out; a sync running past the mapping, or of a freed
 *   mapping, is `not-mapped` and copies nothing;
 * - `unmap` copies the device's bytes back (except DMA_TO_DEVICE) and frees the slots
 *   (`usedSlots` back to the model's count).
 * @module
 */

import {
  DirectDmaApi,
  DmaMapError,
  GuestMemory,
  IO_TLB_SIZE,
  SwiotlbDmaApi,
} from "../../../src/mod.ts";
import { OracleFailure } from "../../target.ts";

/** One swiotlb operation: forced or not, and steps `[kind, which, a, b]` (naturals). */
export interface SwiotlbOp {
  /** Bounce every map (`swiotlb=force`), or only what the 24-bit mask cannot reach. */
  force: boolean;
  /** Steps: 0 map, 1 device write, 2 syncForCpu, 3 syncForDevice, 4 unmap. */
  steps: [number, number, number, number][];
}

/** Number of step kinds. */
export const SWIOTLB_STEP_KINDS = 5;

const POOL = 0x10_0000; // 16 slots of 2 KiB
const POOL_SIZE = 16 * IO_TLB_SIZE;
const LOW = 0x2_0000; // buffers below the 24-bit mask
const HIGH = 0x200_0000; // buffers above it
const LENGTHS = [1, 100, 2048, 2049, 4096, 8192, 20000, 300 * 1024];

function fail(msg: string): never {
  throw new OracleFailure("swiotlb-model", msg);
}

interface Live {
  bus: number;
  gpa: number;
  len: number;
  dir: 0 | 1 | 2;
  bounced: boolean;
  slots: number;
}

let memory: GuestMemory | undefined;

/** swiotlb over a 24-bit dma-direct: low memory is reachable, high memory must bounce. */
function smallPoolApi(memory: GuestMemory, force: boolean): SwiotlbDmaApi {
  return new SwiotlbDmaApi({
    memory,
    poolGpa: POOL,
    poolSize: POOL_SIZE,
    inner: new DirectDmaApi({ mask: 0xff_ffff }),
    force,
  });
}

/**
 * Runs one {@link SwiotlbOp} against the model.
 * @returns bytes checked.
 * @throws OracleFailure `swiotlb-model` on any disagreement.
 */
export function runSwiotlbOp(op: SwiotlbOp): number {
  memory ??= new GuestMemory([
    { gpa: LOW, size: 0x8_0000, name: "low" },
    { gpa: POOL, size: POOL_SIZE, name: "pool" },
    { gpa: HIGH, size: 0x8_0000, name: "high" },
  ]);
  const m = memory;
  const api = smallPoolApi(m, op.force);
  const live: Live[] = [];
  let checked = 0;
  let stamp = 1;
  const fill = (gpa: number, len: number) => {
    const b = new Uint8Array(len);
    for (let i = 0; i < len; i++) b[i] = (stamp * 31 + i) & 0xff;
    stamp++;
    m.write(gpa, b);
    return b;
  };
  const same = (what: string, gpa: number, want: Uint8Array) => {
    const got = m.view(gpa, want.length);
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i]) fail(`${what}: byte ${i} is ${got[i]}, model ${want[i]}`);
    }
    checked += want.length;
  };
  for (const [kind, which, a, b] of op.steps) {
    const l = live.length > 0 ? live[which % live.length] : undefined;
    switch (kind % SWIOTLB_STEP_KINDS) {
      case 0: { // map
        const len = LENGTHS[a % LENGTHS.length];
        const high = b % 2 === 1 && len <= 0x8_0000;
        const gpa = (high ? HIGH : LOW) + ((b >> 1) % 64) * 512;
        const dir = (a % 3) as 0 | 1 | 2;
        const what = `map(0x${gpa.toString(16)}, ${len}, dir ${dir})`;
        const src = fill(gpa, Math.min(len, 0x8_0000 - (gpa - (high ? HIGH : LOW))));
        const used = api.usedSlots;
        let bus: number;
        try {
          bus = Number(api.map(gpa, src.length, dir));
        } catch (e) {
          if (!(e instanceof DmaMapError)) throw e;
          const ok = e.reason === "too-large"
            ? src.length > 128 * IO_TLB_SIZE
            : e.reason === "pool-exhausted" && used > 0 && (op.force || high);
          if (!ok) fail(`${what}: ${e.reason} with ${used} slots in use`);
          if (api.usedSlots !== used) fail(`${what}: failed map changed usedSlots`);
          break;
        }
        const bounced = bus >= POOL && bus < POOL + POOL_SIZE;
        if (bounced !== (op.force || high)) fail(`${what}: bounced ${bounced} (force ${op.force})`);
        if (!bounced && bus !== gpa) fail(`${what}: direct bus 0x${bus.toString(16)}`);
        const slots = bounced ? Math.ceil(src.length / IO_TLB_SIZE) : 0;
        if (api.usedSlots !== used + slots) {
          fail(`${what}: usedSlots ${api.usedSlots}, model ${used + slots}`);
        }
        if (bounced) same(`${what}: slot bytes`, bus, src);
        live.push({ bus, gpa, len: src.length, dir, bounced, slots });
        break;
      }
      case 1: // the device writes the whole mapping (through its bus address)
        if (l !== undefined) fill(l.bus, l.len);
        break;
      case 2:
      case 3: { // partial sync of [off, off + n), sometimes past the end
        if (l === undefined) break;
        const off = a % l.len;
        const n = 1 + (b % (l.len - off + 2)); // up to 1 byte past the end
        const toCpu = kind % SWIOTLB_STEP_KINDS === 2;
        const what = `${toCpu ? "syncForCpu" : "syncForDevice"}(+${off}, ${n}) of ${l.len} bytes`;
        const [from, to] = toCpu ? [l.bus, l.gpa] : [l.gpa, l.bus];
        const want = m.view(to, l.len).slice();
        const moved = m.view(from + off, Math.min(n, l.len - off)).slice();
        const copies = l.bounced && (toCpu ? l.dir !== 1 : l.dir !== 2);
        let refused = false;
        try {
          if (toCpu) api.syncForCpu(l.bus + off, n, l.dir);
          else api.syncForDevice(l.bus + off, n, l.dir);
        } catch (e) {
          if (!(e instanceof DmaMapError) || e.reason !== "not-mapped") throw e;
          refused = true;
        }
        const past = off + n > l.len;
        if (refused !== (past && l.bounced)) fail(`${what}: refused ${refused}, model ${past}`);
        if (copies && !refused) want.set(moved, off);
        same(what, to, want);
        break;
      }
      default: { // unmap: copies back unless DMA_TO_DEVICE, frees the slots
        if (l === undefined) break;
        live.splice(live.indexOf(l), 1);
        const want = l.bounced && l.dir !== 1
          ? m.view(l.bus, l.len).slice()
          : m.view(l.gpa, l.len).slice();
        const used = api.usedSlots;
        api.unmap(l.bus, l.len, l.dir);
        same(`unmap of ${l.len} bytes (dir ${l.dir})`, l.gpa, want);
        if (api.usedSlots !== used - l.slots) {
          fail(`unmap: usedSlots ${api.usedSlots}, model ${used - l.slots}`);
        }
        // A sync of the freed mapping is refused.
        if (l.bounced) {
          try {
            api.syncForCpu(l.bus, 1, l.dir);
            fail(`syncForCpu after unmap accepted`);
          } catch (e) {
            if (!(e instanceof DmaMapError) || e.reason !== "not-mapped") throw e;
          }
        }
      }
    }
  }
  for (const l of live) api.unmap(l.bus, l.len, l.dir);
  if (api.usedSlots !== 0) fail(`usedSlots ${api.usedSlots} after unmapping everything`);
  return checked;
}
