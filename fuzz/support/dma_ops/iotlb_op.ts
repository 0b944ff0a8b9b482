/**
 * An IOTLB operation for the `dma-modes` target: drives one {@link Iotlb} (`src/dma/iotlb.ts`)
 * through inserts at the three page levels (4 KiB / 2 MiB / 1 GiB), lookups by IOVA and by page
 * number, `holds`, and every invalidation the models use (page-selective with an address mask,
 * range, domain, global), with a small capacity so that the overflow rule (an insert of a new
 * entry into a full IOTLB flushes everything, QEMU's "iotlb exceeds size limit") fires, and
 * checks every answer against a plain model (a `Map` of live entries):
 *
 * - a lookup hits exactly when the model holds an entry of that domain covering the IOVA, the
 *   smallest level first, with the entry's page GPA, size and permissions;
 * - `size` equals the model's entry count after every step, and `stats.hits + stats.misses`
 *   grows by one per lookup;
 * - a domain ID that is not 16 bits, and a capacity outside 1..2^20, are `RangeError`s that
 *   change nothing;
 * - after every op, a fixed two-domain check of the front cache (a page sharing a cached page's
 *   slot misses) and of the scanning invalidations (see `checkSlowPaths`).
 * @module
 */

import { Iotlb, IOTLB_FRONT_ENTRIES } from "../../../src/mod.ts";
import { OracleFailure } from "../../target.ts";

/** One IOTLB operation: a capacity and steps `[kind, domain, base, off, x]` (all naturals). */
export interface IotlbOp {
  /** Index into {@link IOTLB_CAPACITIES} (some are invalid on purpose). */
  capacity: number;
  /** Steps; see {@link runIotlbOp} for how each field is read. */
  steps: [number, number, number, number, number][];
}

/** Capacities drawn: 0, 1.5 and 2^20 + 1 must be refused with a `RangeError`. */
export const IOTLB_CAPACITIES = [1, 2, 3, 4, 8, 16, 0, 1.5, 2 ** 20 + 1] as const;
/** Number of step kinds. */
export const IOTLB_STEP_KINDS = 9;

const SPAN = [0, 2 ** 12, 2 ** 21, 2 ** 30];
// Page-number bases: 0, just below a 2 MiB and a 1 GiB boundary, across 2^32 pages, high.
const BASES = [0, 511, 262_143, 2 ** 32 - 2, 2 ** 40];
const DOMAINS = [0, 1, 2, 0xffff];
const RANGE_SIZES = [1, 4096, 8192, 2 ** 21, 2 ** 30 + 1, 2 ** 40];

function fail(msg: string): never {
  throw new OracleFailure("iotlb-model", msg);
}

interface Entry {
  domain: number;
  level: number;
  pn: number;
  gpa: number;
  perm: number;
}

/**
 * Runs one {@link IotlbOp} against the model.
 * @returns the number of steps run.
 * @throws OracleFailure `iotlb-model` on any disagreement.
 */
export function runIotlbOp(op: IotlbOp): number {
  const capacity = IOTLB_CAPACITIES[op.capacity % IOTLB_CAPACITIES.length];
  const valid = Number.isInteger(capacity) && capacity >= 1 && capacity <= 2 ** 20;
  let tlb: Iotlb;
  try {
    tlb = new Iotlb(capacity);
  } catch (e) {
    if (valid || !(e instanceof RangeError)) fail(`new Iotlb(${capacity}) threw ${e}`);
    return 0;
  }
  if (!valid) fail(`new Iotlb(${capacity}) accepted an invalid capacity`);
  const r = new IotlbRun(tlb, capacity);
  for (const step of op.steps) r.step(step);
  tlb.resetStats();
  for (const [k, v] of Object.entries(tlb.stats)) {
    if (v !== 0) fail(`resetStats left ${k} = ${v}`);
  }
  checkSlowPaths(op.steps.length);
  return op.steps.length;
}

/** An IOTLB under test beside its model (a `Map` of live entries) and the last insert. */
class IotlbRun {
  readonly model = new Map<string, Entry>();
  last: { d: number; iova: number; level: number } | undefined;
  constructor(readonly tlb: Iotlb, readonly capacity: number) {}

  /** One step `[kind, domain, base, off, x]`; then the entry counts must agree. */
  step([kind, dm, base, off, x]: readonly number[]): void {
    const d = DOMAINS[dm % DOMAINS.length];
    const page = BASES[base % BASES.length] + (off % 64);
    const iova = page * 4096 + ((x * 37) % 4096);
    const what = `step ${kind % IOTLB_STEP_KINDS} domain ${d} iova 0x${iova.toString(16)}`;
    const tlb = this.tlb;
    const lookups = this.lookups();
    switch (kind % IOTLB_STEP_KINDS) {
      case 0:
        this.insert(what, d, iova, off, x);
        break;
      case 1:
        // every other lookup aims at the entry inserted last (any level, often a hit)
        if (x % 2 === 1 && this.last !== undefined) {
          const { d: ld, iova: li } = this.last;
          this.checkLookup(
            `${what} lookup of the last insert`,
            ld,
            li,
            tlb.lookup(ld, li),
            lookups,
          );
        } else this.checkLookup(`${what} lookup`, d, iova, tlb.lookup(d, iova), lookups);
        break;
      case 2:
        this.checkLookup(`${what} lookupPage`, d, page * 4096, tlb.lookupPage(d, page), lookups);
        break;
      case 3: {
        const held = tlb.holds(d, iova);
        if (held !== (this.find(d, iova) !== undefined)) {
          fail(`${what}: holds ${held}, model differs`);
        }
        break;
      }
      case 4:
        this.invalidatePage(what, d, iova, x);
        break;
      case 5:
        this.invalidateRange(what, d, iova, x);
        break;
      case 6:
        tlb.invalidateDomain(d);
        this.removeOverlapping(d, 0, 2 ** 53);
        break;
      case 7:
        tlb.invalidateAll();
        this.model.clear();
        break;
      default: { // a domain ID that is not 16 bits: RangeError, nothing inserted
        const bad = x % 2 === 0 ? 0x1_0000 + (x % 7) : -1 - (x % 7);
        try {
          tlb.insert(bad, iova, 1, 0, 1);
          fail(`${what}: insert with domain ${bad} accepted`);
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
        }
      }
    }
    if (tlb.size !== this.model.size) {
      fail(`${what}: IOTLB holds ${tlb.size}, model ${this.model.size}`);
    }
  }

  lookups(): number {
    return this.tlb.stats.hits + this.tlb.stats.misses;
  }

  /** The model's entry of domain `d` covering `iova`, the smallest level first. */
  find(d: number, iova: number): Entry | undefined {
    for (let level = 1; level <= 3; level++) {
      const e = this.model.get(keyOf(d, level, Math.floor(iova / SPAN[level])));
      if (e !== undefined) return e;
    }
    return undefined;
  }

  /** Removes the model's entries of domain `d` overlapping [start, end). */
  removeOverlapping(d: number, start: number, end: number): void {
    if (end <= start) return;
    for (const [k, e] of this.model) {
      const s = e.pn * SPAN[e.level];
      if (e.domain === d && s < end && start < s + SPAN[e.level]) this.model.delete(k);
    }
  }

  /** A lookup's answer (`hit`, the hit fields) and the lookup counters against the model. */
  checkLookup(what: string, d: number, iova: number, hit: boolean, before: number): void {
    const tlb = this.tlb;
    const want = this.find(d, iova);
    if (hit !== (want !== undefined)) {
      fail(`${what}: ${hit ? "hit" : "miss"}, model ${want ? JSON.stringify(want) : "no entry"}`);
    }
    if (want !== undefined) {
      const size = SPAN[want.level];
      if (tlb.hitGpa !== want.gpa || tlb.hitSize !== size || tlb.hitPerm !== want.perm) {
        fail(
          `${what}: hit gpa ${tlb.hitGpa} size ${tlb.hitSize} perm ${tlb.hitPerm}, ` +
            `model ${want.gpa} ${size} ${want.perm}`,
        );
      }
    }
    const after = this.lookups();
    if (after !== before + 1) fail(`${what}: hits + misses went from ${before} to ${after}`);
  }

  /** Insert (a new entry into a full IOTLB flushes everything first). */
  insert(what: string, d: number, iova: number, off: number, x: number): void {
    const tlb = this.tlb;
    const level = 1 + (x % 3);
    const pn = Math.floor(iova / SPAN[level]);
    const gpa = ((x % 1024) * 512 + (off % 64)) * 4096;
    const perm = 1 + (x % 3);
    const k = keyOf(d, level, pn);
    const flushes = tlb.stats.overflowFlushes;
    const overflow = !this.model.has(k) && this.model.size >= this.capacity;
    if (overflow) this.model.clear();
    this.model.set(k, { domain: d, level, pn, gpa, perm });
    tlb.insert(d, iova, level, gpa, perm);
    this.last = { d, iova, level };
    // what was just inserted is found, at its level (every other insert: the rest go on cold)
    if (off % 2 === 0) {
      const before = this.lookups();
      this.checkLookup(`${what} lookup after insert`, d, iova, tlb.lookup(d, iova), before);
    }
    if (tlb.stats.overflowFlushes !== flushes + (overflow ? 1 : 0)) {
      fail(`${what}: overflow flushes ${tlb.stats.overflowFlushes}, model overflow ${overflow}`);
    }
  }

  /** Page-selective, 2^am pages, aligned down (VT-d); the pages just outside keep theirs. */
  invalidatePage(what: string, d: number, iova: number, x: number): void {
    const tlb = this.tlb, last = this.last;
    const am = x % 10;
    const size = 4096 * 2 ** am;
    // one page in two aims at the page beside the last 4 KiB insert, so what a one-page
    // invalidation must leave alone is there
    const near = am === 0 && last !== undefined && last.level === 1 && x % 20 === 0;
    const pd = near ? last!.d : d;
    const at = near ? (Math.floor(last!.iova / 4096) ^ 1) * 4096 : iova;
    const start = Math.floor(at / size) * size;
    // am 0 through the parameter's default (the one-page invalidation callers write)
    if (am === 0) tlb.invalidatePage(pd, at);
    else tlb.invalidatePage(pd, at, am);
    this.removeOverlapping(pd, start, start + size);
    // nothing outside the 2^am pages goes: the pages just before and just after keep theirs
    for (const edge of [start - 4096, start + size]) {
      if (edge >= 0 && tlb.holds(pd, edge) !== (this.find(pd, edge) !== undefined)) {
        fail(`${what}: invalidatePage(am ${am}) changed the page at ${edge} outside it`);
      }
    }
  }

  /**
   * A range invalidation; boundary ranges too: one ending where the last inserted entry
   * begins, one starting where it ends; the entry beside the range (a range scan when the range
   * is large) must survive it.
   */
  invalidateRange(what: string, d: number, iova: number, x: number): void {
    const tlb = this.tlb, last = this.last;
    const size = RANGE_SIZES[x % RANGE_SIZES.length];
    const where = Math.floor(x / RANGE_SIZES.length) % 4;
    if (where < 2 || last === undefined) {
      tlb.invalidateRange(d, iova, size);
      this.removeOverlapping(d, iova, iova + size);
      return;
    }
    // The sizes that make the IOTLB scan every entry instead of probing pages.
    const big = RANGE_SIZES[3 + (x % 3)];
    const span = SPAN[last.level];
    const es = Math.floor(last.iova / span) * span;
    const start = where === 2 && es >= big ? es - big : es + span;
    tlb.invalidateRange(last.d, start, big);
    this.removeOverlapping(last.d, start, start + big);
    const before = this.lookups();
    const hit = tlb.lookup(last.d, last.iova);
    this.checkLookup(
      `${what} lookup after invalidating [${start}, +${big})`,
      last.d,
      last.iova,
      hit,
      before,
    );
  }
}

function keyOf(d: number, level: number, pn: number): string {
  return `${d}/${level}/${pn}`;
}

/**
 * After every op, on a fresh 16-entry IOTLB shared by two domains (so a domain invalidation
 * cannot be a generation bump): the front cache answers only for the page it holds, not for a
 * page sharing its slot (`probeFront` is the IOMMU's translate fast path); a domain
 * invalidation and a range invalidation large enough to scan every entry (`#removeWhere`)
 * remove exactly the entries of that domain in range. `salt` varies the pages.
 */
function checkSlowPaths(salt: number): void {
  const t = new Iotlb(16);
  const p = 0x1000 + (salt % 200); // 4 KiB page numbers below 2^32 (front-cached)
  const alias = p + IOTLB_FRONT_ENTRIES * (1 + (salt % 3)); // same front-cache slot
  t.insert(1, p * 4096, 1, 0x5000, 3);
  t.insert(2, (p + 1) * 4096, 1, 0x6000, 3);
  t.insert(1, (p + 2) * 4096, 1, 0x7000, 1);
  t.insert(1, 2 ** 30 * (1 + (salt % 4)), 3, 2 ** 30, 3); // a 1 GiB entry far above
  for (let i = 0; i < 2; i++) t.lookup(1, p * 4096); // a hit fills the front cache
  if (t.probeFront(1, alias)) {
    fail(`probeFront of page ${alias} hit (gpa ${t.hitGpa}): only page ${p} is in its slot`);
  }
  if (!t.probeFront(1, p) || t.hitGpa !== 0x5000) {
    fail(`probeFront of page ${p} missed or gave gpa ${t.hitGpa}`);
  }
  if (t.probeFront(2, p)) fail(`probeFront of page ${p} hit for another domain`);
  // a range of 2^40 bytes from page p + 2 scans every entry: only domain 1's in range go
  t.invalidateRange(1, (p + 2) * 4096, 2 ** 40);
  const want = (d: number, page: number, held: boolean, what: string) => {
    if (t.holds(d, page * 4096) !== held) {
      fail(`${what}: domain ${d} page ${page} ${held ? "lost" : "still held"}`);
    }
  };
  want(1, p, true, "large invalidateRange");
  want(2, p + 1, true, "large invalidateRange");
  want(1, p + 2, false, "large invalidateRange");
  want(1, 2 ** 18 * (1 + (salt % 4)), false, "large invalidateRange");
  const left = (n: number, what: string) => {
    if (t.size !== n) fail(`${what}: ${t.size} entries left, want ${n}`);
  };
  left(2, "large invalidateRange");
  t.invalidateDomain(1);
  want(1, p, false, "invalidateDomain");
  want(2, p + 1, true, "invalidateDomain");
  left(1, "invalidateDomain");
}
