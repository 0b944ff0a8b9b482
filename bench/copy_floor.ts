/**
 * `deno task bench:copy-floor`: what a payload copy itself costs on this runtime, the floor
 * under every bounce-buffer figure (issue 16: swiotlb vs identity at 1500 B).
 *
 * The ring bench's `swiotlb` case copies each 1500 B buffer three times: original -> slot on map
 * (Linux bounces on map in every direction), the device's own copy into the slot, slot ->
 * original on unmap (FROM_DEVICE). `identity` copies once (the device's copy). So at least two
 * copies per chain are the bounce's own. This measures, per copy of `payload` bytes, batch 32,
 * buffers laid out as the ring bench lays them (page-aligned, every other page):
 * - `set`: `TypedArray.prototype.set(subarray)` between two views (allocates the subarray);
 * - `copyWithin`: `copyWithin` inside one store (a C++ builtin entered through the runtime);
 * - `memmove`: the store's WebAssembly `memory.copy` (`backingCopier`, what guest memory uses);
 * - `simd-loop`: the store's WebAssembly SIMD forward loop (`backingSmallCopier`, below 128 B);
 * - `word-loop`: a JavaScript `Int32Array` loop;
 * and the bounce's three copies per chain with `memmove`:
 * - `bounce-cold`: slots taken next-fit from a 4 MiB pool (the bench's pool, larger than L2, so
 *   each slot is cold when its map copy writes it: swiotlb's real access pattern);
 * - `bounce-warm`: the same three copies into the same 32 slots every batch (an L1/L2-warm pool).
 *
 * Figures are ns per copy (per chain for the bounce lines), min and median over rounds; each
 * round measures every variant once, in turn, so a slow period of the shared machine falls on
 * all of them. `--json FILE` writes the same numbers.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { backingCopier, backingSmallCopier, createCopyableBacking } from "../src/memory/mod.ts";

/** One measured variant. */
export interface CopyFloorLine {
  /** Variant name (see the module doc). */
  name: string;
  /** Payload bytes per copy. */
  payload: number;
  /** Copies per measured unit (1, or 3 for the bounce lines). */
  copies: number;
  /** Lowest round, ns per unit. */
  minNs: number;
  /** Median round, ns per unit. */
  medianNs: number;
}

/** A prepared variant. */
export interface CopyFloorVariant {
  /** Variant name (see the module doc). */
  name: string;
  /** Copies per unit (1, or 3 for the bounce lines). */
  copies: number;
  /** One batch: 32 units. */
  run(): void;
}

const BATCH = 32;
const PAGE = 4096;
const SLOT = 2048;
const POOL = 4 << 20;

/**
 * The variants for one payload size over a fresh store, and `verify()`, which throws unless every
 * variant copies the payload into every chain's buffer.
 * @throws Error without WebAssembly.
 */
export function copyFloorVariants(
  payload: number,
): { variants: CopyFloorVariant[]; verify(): void } {
  const slotPage = Math.ceil(payload / PAGE) * PAGE;
  const bufBytes = slotPage * (2 * BATCH + 1);
  const poolOff = Math.ceil(bufBytes / PAGE) * PAGE;
  const buffer = createCopyableBacking(poolOff + POOL);
  if (buffer === null) throw new Error("copy-floor needs WebAssembly (createCopyableBacking)");
  const memmove = backingCopier(buffer)!;
  const simd = backingSmallCopier(buffer);
  const u8 = new Uint8Array(buffer);
  const i32 = new Int32Array(buffer);
  const src = 2 * BATCH * slotPage; // the device's own buffer, as bench/roundtrip.ts places it
  const dst = (c: number) => (2 * c + 1) * slotPage; // chain c's (writable) buffer
  const slots = POOL / SLOT;
  let next = 0;
  const variants: CopyFloorVariant[] = [
    {
      name: "set",
      copies: 1,
      run() {
        for (let c = 0; c < BATCH; c++) u8.set(u8.subarray(src, src + payload), dst(c));
      },
    },
    {
      name: "copyWithin",
      copies: 1,
      run() {
        for (let c = 0; c < BATCH; c++) u8.copyWithin(dst(c), src, src + payload);
      },
    },
    {
      name: "memmove",
      copies: 1,
      run() {
        for (let c = 0; c < BATCH; c++) memmove(dst(c), src, payload);
      },
    },
  ];
  if (simd !== null) {
    variants.push({
      name: "simd-loop",
      copies: 1,
      run() {
        for (let c = 0; c < BATCH; c++) simd(dst(c), src, payload);
      },
    });
  }
  variants.push(
    {
      name: "word-loop",
      copies: 1,
      run() {
        const n = payload >> 2, s = src >> 2;
        for (let c = 0; c < BATCH; c++) {
          const d = dst(c) >> 2;
          for (let i = 0; i < n; i++) i32[d + i] = i32[s + i];
        }
      },
    },
    {
      name: "bounce-cold",
      copies: 3,
      run() {
        const base = next;
        for (let c = 0; c < BATCH; c++) {
          memmove(poolOff + ((base + c) % slots) * SLOT, dst(c), payload);
        }
        for (let c = 0; c < BATCH; c++) {
          memmove(poolOff + ((base + c) % slots) * SLOT, src, payload);
        }
        for (let c = 0; c < BATCH; c++) {
          memmove(dst(c), poolOff + ((base + c) % slots) * SLOT, payload);
        }
        next = (base + BATCH) % slots;
      },
    },
    {
      name: "bounce-warm",
      copies: 3,
      run() {
        for (let c = 0; c < BATCH; c++) memmove(poolOff + c * SLOT, dst(c), payload);
        for (let c = 0; c < BATCH; c++) memmove(poolOff + c * SLOT, src, payload);
        for (let c = 0; c < BATCH; c++) memmove(dst(c), poolOff + c * SLOT, payload);
      },
    },
  );
  return {
    variants,
    // Each variant, run once after the source is refilled, must leave every chain's buffer equal
    // to the source bytes (word-loop: its whole words), or its timing is not a copy's.
    verify() {
      for (const v of variants) {
        for (let i = 0; i < payload; i++) u8[src + i] = (i * 7 + v.name.length) & 0xff;
        for (let c = 0; c < BATCH; c++) u8.fill(0, dst(c), dst(c) + payload);
        v.run();
        const n = v.name === "word-loop" ? payload & ~3 : payload;
        for (let c = 0; c < BATCH; c++) {
          for (let i = 0; i < n; i++) {
            if (u8[dst(c) + i] !== u8[src + i]) {
              throw new Error(`copy-floor: ${v.name} ${payload} B did not copy byte ${i}`);
            }
          }
        }
      }
    },
  };
}

/**
 * Measures every variant (or those named in `only`) for each payload: `rounds` rounds, each
 * running every variant for about `ms` milliseconds after a short warm-up.
 * @returns one line per variant and payload.
 * @throws Error without WebAssembly, or when a variant does not copy (verify).
 */
export function measureCopyFloor(
  payloads: readonly number[],
  rounds: number,
  ms: number,
  progress?: (done: number, total: number) => void,
  only?: readonly string[],
): CopyFloorLine[] {
  const out: CopyFloorLine[] = [];
  for (const payload of payloads) {
    const all = copyFloorVariants(payload);
    all.verify();
    const variants = only ? all.variants.filter((v) => only.includes(v.name)) : all.variants;
    const per = variants.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      variants.forEach((v, k) => {
        for (let i = 0; i < 50; i++) v.run();
        let batches = 0;
        const t0 = performance.now();
        let t = t0;
        while (t - t0 < ms) {
          for (let i = 0; i < 20; i++) v.run();
          batches += 20;
          t = performance.now();
        }
        per[k].push(((t - t0) * 1e6) / (batches * BATCH));
      });
      progress?.(r + 1, rounds);
    }
    variants.forEach((v, k) => {
      const s = per[k].sort((a, b) => a - b);
      out.push({
        name: v.name,
        payload,
        copies: v.copies,
        minNs: s[0],
        medianNs: s[s.length >> 1],
      });
    });
  }
  return out;
}

const USAGE = "deno task bench:copy-floor [--payload N]... [--rounds N (default 7)] " +
  "[--time MS per variant per round (default 100)] [--json FILE]";

function positiveInt(v: unknown): number | null {
  const n = Number(v);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

async function main(): Promise<number> {
  let bad: string | null = null;
  const a = parseArgs(Deno.args, {
    string: ["payload", "rounds", "time", "json"],
    collect: ["payload"],
    boolean: ["help"],
    unknown: (f: string) => {
      bad ??= `unknown option ${f}`;
      return false;
    },
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const payloads = (a.payload as string[]).length
    ? (a.payload as string[]).map(positiveInt)
    : [64, 1500];
  const rounds = positiveInt(a.rounds ?? "7");
  const ms = positiveInt(a.time ?? "100");
  if (bad === null && payloads.some((p) => p === null || p > 65536)) {
    bad = "--payload must be an integer in 1..65536";
  }
  if (bad === null && (rounds === null || ms === null)) {
    bad = "--rounds and --time must be positive integers";
  }
  if (bad !== null) {
    console.error(`bench:copy-floor: ${bad}. Fix: ${USAGE.replace("deno task ", "")}`);
    return 2;
  }
  const lines = measureCopyFloor(payloads as number[], rounds!, ms!, (d, t) => {
    if (Deno.stderr.isTerminal()) {
      Deno.stderr.writeSync(new TextEncoder().encode(`\rround ${d}/${t}`));
    }
  });
  if (Deno.stderr.isTerminal()) console.error("");
  console.log("copy floor (ns per copy; bounce lines: ns per chain for 3 copies), batch 32");
  for (const l of lines) {
    console.log(
      `  ${String(l.payload).padStart(5)} B  ${l.name.padEnd(12)} min ${
        l.minNs.toFixed(1).padStart(7)
      }  median ${l.medianNs.toFixed(1).padStart(7)}`,
    );
  }
  if (a.json) {
    try {
      await Deno.writeTextFile(
        a.json,
        JSON.stringify({ schema: "copy-floor/1", runtime: Deno.version, lines }, null, 2) + "\n",
      );
    } catch (e) {
      console.error(
        `bench:copy-floor: cannot write --json ${a.json} (${(e as Error).name}). Fix: give a ` +
          "writable file path",
      );
      return 2;
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
