/**
 * `deno task bench:profile`: runs one case's round trip in a loop and prints where the time goes,
 * from a V8 CPU profile (`--cpu-prof` writes it; this reads it back): self time per function,
 * top first. Use it to find the hot spot of a DMA mode before changing it.
 *
 * Usage: `deno task bench:profile [--seconds S] [--top N] CASE-NAME` (a name from
 * `deno task bench --list`, e.g. `"split/swiotlb q256 b32 p64 c1"`). It runs the case in a child
 * `deno run --cpu-prof`, then prints the child's profile (`--profile FILE` prints an existing
 * one; `--child` is the child's own mode: just run the loop).
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { BASE, caseName, type CaseParams } from "./cases.ts";
import { createBenchable } from "./engines.ts";

/** Parses a case name back into parameters (the inverse of {@link caseName}). */
export function parseCaseName(name: string): CaseParams {
  const parts = name.trim().split(/\s+/);
  const head = parts.shift() ?? "";
  const p: CaseParams = { ...BASE };
  if (head === "sol") p.engine = "sol";
  else {
    const [engine, dma] = head.split("/");
    if ((engine !== "split" && engine !== "packed") || !dma) {
      throw new Error(`case ${name}: expected sol or split/MODE or packed/MODE first`);
    }
    p.engine = engine;
    p.dma = dma;
  }
  for (const x of parts) {
    const m = /^([qbpc])(\d+)$/.exec(x);
    if (m) {
      const v = Number(m[2]);
      if (m[1] === "q") p.size = v;
      else if (m[1] === "b") p.batch = v;
      else if (m[1] === "p") p.payload = v;
      else p.chainLen = v;
    } else if (x === "ind") p.indirect = true;
    else if (x === "evidx") p.eventIdx = true;
    else throw new Error(`case ${name}: unknown part ${x}`);
  }
  return p;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self-time shares per function of a `.cpuprofile`, top first. */
export function selfTimes(profile: { nodes: Node[] }): { fn: string; share: number }[] {
  const by = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const h = n.hitCount ?? 0;
    total += h;
    const f = n.callFrame;
    const file = f.url.split("/").slice(-2).join("/");
    const key = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
    by.set(key, (by.get(key) ?? 0) + h);
  }
  return [...by.entries()].map(([fn, h]) => ({ fn, share: total ? h / total : 0 }))
    .sort((a, b) => b.share - a.share);
}

async function main(): Promise<number> {
  const usage = "deno task bench:profile [--seconds S (default 3)] [--top N (default 25)] " +
    "[--profile FILE.cpuprofile (read an existing profile)] CASE-NAME";
  let bad: string | null = null;
  const a = parseArgs(Deno.args, {
    string: ["seconds", "top", "profile"],
    boolean: ["help", "child"],
    unknown: (f: string) => {
      if (f.startsWith("-")) bad ??= `unknown option ${f}`;
      return true;
    },
  });
  if (a.help) {
    console.log(usage);
    return 0;
  }
  if (bad !== null || a._.length !== 1) {
    console.error(
      `bench:profile: ${bad ?? "give exactly one CASE-NAME"}. Fix: ${
        usage.replace("deno task ", "")
      }`,
    );
    return 2;
  }
  const name = String(a._[0]);
  const top = Number(a.top ?? 25);
  if (a.profile) {
    for (const r of selfTimes(JSON.parse(await Deno.readTextFile(a.profile))).slice(0, top)) {
      console.log(`${(r.share * 100).toFixed(1).padStart(5)}%  ${r.fn}`);
    }
    return 0;
  }
  const p = parseCaseName(name);
  if (caseName(p) !== name) throw new Error(`case name ${name} is not canonical: ${caseName(p)}`);
  if (!a.child) {
    const dir = await Deno.makeTempDir({ prefix: "virtq-prof-" });
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-sys",
        "--cpu-prof",
        `--cpu-prof-dir=${dir}`,
        new URL(import.meta.url).pathname,
        "--child",
        "--seconds",
        String(a.seconds ?? 3),
        name,
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!out.success) return 2;
    const file = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".cpuprofile"));
    if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
    console.log(`profile: ${dir}/${file.name} (open in Chrome DevTools)`);
    const prof = JSON.parse(await Deno.readTextFile(`${dir}/${file.name}`));
    for (const r of selfTimes(prof).slice(0, top)) {
      console.log(`${(r.share * 100).toFixed(1).padStart(5)}%  ${r.fn}`);
    }
    return 0;
  }
  const b = createBenchable(p);
  const ms = Number(a.seconds ?? 3) * 1000;
  const t0 = performance.now();
  let calls = 0;
  while (performance.now() - t0 < ms) {
    b.run();
    calls++;
  }
  const ns = ((performance.now() - t0) * 1e6) / (calls * b.chainsPerCall);
  console.log(`${name}: ${ns.toFixed(1)} ns/chain (loop average with the profiler on)`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`bench:profile: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
