/**
 * `deno task bench`: ring round-trip benchmarks with the speed-of-light loop, a memcpy line,
 * allocation check, baselines (`--save`/`--compare`), JSON output and the targets block.
 * See `--help` and README "Benchmarks".
 *
 * @module
 */

import { cpus } from "node:os";
import { type BenchArgs, HELP, parseBenchArgs } from "./args.ts";
import {
  buildSuites,
  caseName,
  type CaseParams,
  selectCases,
  smokeCases,
  withSol,
} from "./cases.ts";
import { AVAILABLE, createBenchable, PENDING } from "./engines.ts";
import { runCases } from "./runner.ts";
import { allocCases } from "./alloc.ts";
import { isolateKey, LocalMeasurer, type Measurer, WorkerMeasurer } from "./measurer.ts";
import { checkIsolation, formatIsolation, type IsolationCheck } from "./isolation.ts";
import { computeTargets, type CopyFloor, indicative, solTarget } from "./targets.ts";
import { measureCopyFloor } from "./copy_floor.ts";
import { compareResults } from "./compare.ts";
import {
  type AllocResult,
  baselinePath,
  loadResults,
  type Results,
  RESULTS_SCHEMA_VERSION,
  writeResults,
} from "./results.ts";
import { formatAlloc, formatComparison, formatResults, formatTargets } from "./report.ts";

function machine(): Results["machine"] {
  let cpus = 0, hostname: string | null = null;
  try {
    cpus = navigator.hardwareConcurrency ?? 0;
  } catch { /* not exposed */ }
  try {
    hostname = Deno.hostname();
  } catch { /* needs --allow-sys */ }
  return { os: Deno.build.os, arch: Deno.build.arch, cpus, cpuName: cpuName(), hostname };
}

function cpuName(): string | null {
  try {
    return cpus()[0]?.model ?? null; // node:os (needs --allow-sys; /proc needs --allow-all)
  } catch {
    return null;
  }
}

/** Why `path` cannot be written (checked before minutes of measuring), or null. */
function outputProblem(path: string): string | null {
  try {
    if (Deno.statSync(path).isDirectory) return "is a directory";
    return null;
  } catch { /* missing: check the directory */ }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  try {
    return Deno.statSync(dir).isDirectory ? null : `${dir} is not a directory`;
  } catch {
    return `directory ${dir} does not exist`;
  }
}

/** Cases ready to measure, or the exit status when there is nothing to measure. */
type Plan =
  | { code: number }
  | { cases: ReturnType<typeof selectCases>; savePath: string | null; baseline: Results | null };

/** Selects the cases (`--list` prints them) and fails fast on bad names and files. */
async function plan(args: BenchArgs, suites: ReturnType<typeof buildSuites>): Promise<Plan> {
  const cases = args.smoke
    ? withSol(smokeCases(AVAILABLE).filter((c) => !args.filter || args.filter.test(caseName(c))))
    : selectCases(suites, args.suites, args.filter);
  if (args.list) {
    const chosen = new Set(cases.map(caseName));
    for (const s of suites) {
      const shown = withSol(s.cases).filter((c) => chosen.has(caseName(c)));
      if (shown.length === 0) continue;
      console.log(`${s.name}: ${s.description}`);
      for (const c of shown) console.log(`  ${caseName(c)}`);
    }
    if (chosen.size === 0) console.log("(no case matches --suite/--filter)");
    return { code: 0 };
  }
  if (cases.length === 0) {
    console.error("no case matches --suite/--filter; see --list");
    return { code: 2 };
  }
  // fail fast on bad names/files, before minutes of measuring
  const savePath = args.save ? baselinePath(args.save) : null;
  const baseline = args.compare
    ? await loadResults(
      /[/\\]|\.json$/.test(args.compare) ? args.compare : baselinePath(args.compare),
    )
    : null;
  if (baseline !== null) {
    const names = new Set(baseline.results.map((r) => r.name));
    if (!cases.some((c) => names.has(caseName(c)))) {
      console.error(
        `bench: --compare ${args.compare}: no case of this run is in the baseline (` +
          `${baseline.results.length} case(s) there), so nothing would be compared. ` +
          "Fix: select cases the baseline has (--suite/--filter) or save a new baseline",
      );
      return { code: 2 };
    }
  }
  if (args.json) {
    const problem = outputProblem(args.json);
    if (problem) {
      console.error(`bench: --json ${args.json}: ${problem}. Fix: name a writable file`);
      return { code: 2 };
    }
  }

  return { cases, savePath, baseline };
}

/** What one measuring pass found. */
interface Measured {
  results: Results["results"];
  alloc: AllocResult[];
  targets: ReturnType<typeof computeTargets>;
  isolationFailed: boolean;
}

/** Measures the cases (and allocation, isolation) and computes the targets. */
async function measure(args: BenchArgs, cases: ReturnType<typeof selectCases>): Promise<Measured> {
  const iso = args.isolate;
  const m: Measurer = iso === "none"
    ? new LocalMeasurer(createBenchable)
    : new WorkerMeasurer((p) => isolateKey(p, iso));
  const results: Results["results"] = [];
  const alloc: AllocResult[] = [];
  let isolation: IsolationCheck | null = null;
  // Before any worker exists: right after the workers are closed, their isolates' teardown runs
  // beside this one for about a second and slowed the floor's copies up to 10x (full run).
  const copyFloor = args.smoke ? undefined : copyFloorFor(cases);
  try {
    results.push(
      ...await runCases(cases, m, {
        rounds: args.rounds,
        timeMs: args.timeMs,
        isolates: args.isolates,
        progress: (l) => console.error(l),
      }),
    );
    if (!args.noAlloc) {
      for (const p of allocCases(args.smoke)) alloc.push(await m.alloc(p));
    }
    if (args.checkIsolation) {
      isolation = await checkIsolation(results, m, {
        rounds: args.rounds,
        timeMs: args.timeMs,
        noise: args.noise,
        progress: (l) => console.error(l),
      });
    }
  } finally {
    m.close();
  }
  const targets = computeTargets(results, alloc, {
    invalidationNs: args.invalidationNs,
    requestNs: args.requestNs,
    copyFloor,
  });
  let isolationFailed = false;
  if (isolation) {
    console.log("\n" + formatIsolation(isolation, args.isolate));
    targets.push(isolation.target);
    isolationFailed = isolation.target.status === "missed";
  }

  return { results, alloc, targets, isolationFailed };
}

// The bounce-copy floor at 1500 B (bench/copy_floor.ts: its memmove and bounce-cold variants, 9
// rounds of 20 ms each, under 1 s), measured here, before the cases, when this run has a swiotlb
// case at that payload, for the swiotlb line's floor.
function copyFloorFor(cases: readonly CaseParams[]): CopyFloor | undefined {
  const payload = 1500;
  if (!cases.some((p) => p.dma === "swiotlb" && p.payload === payload)) return undefined;
  console.error(`bounce-copy floor at ${payload} B (bench:copy-floor) ...`);
  try {
    const lines = measureCopyFloor([payload], 9, 20, undefined, ["memmove", "bounce-cold"]);
    const copy = lines.find((l) => l.name === "memmove");
    const bounce = lines.find((l) => l.name === "bounce-cold");
    return copy && bounce ? { payload, copyNs: copy.minNs, bounceNs: bounce.minNs } : undefined;
  } catch (e) {
    // no WebAssembly store on this runtime: the floor line is left out, saying why
    console.error(`bounce-copy floor left out: ${(e as Error).message}`);
    return undefined;
  }
}

/** Prints the results, compares with the baseline, saves; returns the exit status. */
async function report(
  args: BenchArgs,
  { results, alloc, targets, isolationFailed }: Measured,
  savePath: string | null,
  baseline: Results | null,
): Promise<number> {
  const rt = Deno.version;
  const out: Results = {
    schema: RESULTS_SCHEMA_VERSION,
    createdAt: new Date().toISOString(),
    machine: machine(),
    runtime: { deno: rt.deno, v8: rt.v8, typescript: rt.typescript },
    options: {
      smoke: args.smoke,
      rounds: args.rounds,
      timeMs: args.timeMs,
      suites: args.suites,
      filter: args.filter ? args.filter.source : null,
      isolates: Math.min(args.isolates, args.rounds),
    },
    results,
    targets,
    alloc,
  };

  console.log("");
  console.log(formatResults(results));
  const a = formatAlloc(alloc);
  if (a) console.log("\n" + a);

  let code = 0;
  if (baseline) {
    const c = compareResults(results, baseline.results, {
      threshold: args.threshold,
      noise: args.noise,
    });
    console.log("");
    console.log(formatComparison(args.compare!, c.comparisons, c.onlyCurrent, c.onlyBaseline));
    if (baseline.machine.hostname !== out.machine.hostname || baseline.runtime.deno !== rt.deno) {
      console.log(
        `  note: baseline from ${
          baseline.machine.hostname ?? "?"
        } deno ${baseline.runtime.deno}; ` +
          `ratios across machines or runtimes are not meaningful`,
      );
    }
    const bk = baseline.options.isolates ?? 1, ck = out.options.isolates ?? 1;
    if (bk !== ck) {
      console.log(
        `  note: baseline ran ${bk} isolate(s) per case, this run ${ck}; a case's p50 is its best ` +
          `round over all isolates, so compare runs with the same --isolates`,
      );
    }
    if (c.comparisons.some((x) => x.verdict === "slower")) code = 1;
  }
  if (savePath) {
    await writeResults(savePath, out);
    console.log(`\nsaved baseline ${savePath}`);
  }
  if (args.json) {
    await writeResults(args.json, out);
    console.log(`wrote ${args.json}`);
  }

  const s = args.smoke ? indicative(solTarget(results)) : solTarget(results);
  console.log("");
  console.log(
    formatTargets(
      args.smoke ? [s, ...targets.filter((t) => t.name.startsWith("allocation"))] : targets,
    ),
  );
  console.log(
    `\nENGINE/SPEED-OF-LIGHT: ${
      s.value === null ? `n/a (${s.detail})` : s.detail
    }; goal ${s.goal} ${s.status === "info" ? "(not judged)" : s.status}`,
  );
  if (code) console.log("\nREGRESSION: at least one case is slower than the baseline (exit 1)");
  if (isolationFailed) {
    console.log("\nISOLATION: a case measures differently in the full run and alone (exit 1)");
    code = 1;
  }
  return code;
}

async function main(args: BenchArgs): Promise<number> {
  if (args.suites.includes("vhost-user")) {
    // real back-ends, its own runner and permissions (bench/vhost_user.ts)
    return await (await import("./vhost_user.ts")).runVhostUserSuite(Deno.args);
  }
  const suites = buildSuites(AVAILABLE);
  if (args.help) {
    console.log(HELP);
    console.log("Suites:");
    for (const s of suites) console.log(`  ${s.name.padEnd(10)} ${s.description}`);
    return 0;
  }
  const p = await plan(args, suites);
  if ("code" in p) return p.code;
  const { cases, savePath, baseline } = p;

  const rt = Deno.version;
  console.log(
    `virtq-lab bench: ${cases.length} cases x ${args.rounds} round(s), ${args.timeMs} ms each, ` +
      `isolate: ${args.isolate}` +
      (args.isolates > 1 ? ` x${Math.min(args.isolates, args.rounds)} per case; ` : "; ") +
      `deno ${rt.deno}, v8 ${rt.v8}, ${Deno.build.os}/${Deno.build.arch}, ` +
      `${navigator.hardwareConcurrency} cpus`,
  );
  if (PENDING.length) console.log(`not on this branch yet: ${PENDING.join("; ")}`);

  return await report(args, await measure(args, cases), savePath, baseline);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(parseBenchArgs(Deno.args));
  } catch (e) {
    console.error(`bench: ${(e as Error).message.split("\n")[0]}`);
    code = 2;
  }
  Deno.exit(code);
}
