/**
 * `deno task fuzz:coverage [fuzz flags]`: runs the campaign (`fuzz/main.ts`, same flags) under
 * `deno run --coverage`, then prints line and branch coverage of `src/virtio/` and `src/dma/`
 * (from `deno coverage --lcov`) and the catalogued error codes the campaign never reached (from
 * the codes targets note through `fuzz/observe.ts`), and the call sites of the shared descriptor
 * rules that never raised their violation (`fuzz/check_sites.ts`). Goal: >= 95% of lines, every
 * code reached, every site of a rule raised from several sites reached.
 * Coverage slows the engine down (about 2.8x), so the same budget does fewer runs.
 * @module
 */

import { CATALOGUE_CODES } from "./catalogue.ts";
import { parseReport } from "./report.ts";
import {
  checkSiteSummary,
  countSiteHits,
  findCheckSites,
  parseLcovDetail,
  ruleNames,
} from "./check_sites.ts";

/** Line and branch counts of one source file (lcov `LF/LH/BRF/BRH`). */
export interface FileCoverage {
  /** Path as lcov gives it (`SF:`). */
  file: string;
  /** Lines found. */
  lines: number;
  /** Lines hit. */
  linesHit: number;
  /** Branches found. */
  branches: number;
  /** Branches hit. */
  branchesHit: number;
}

/** Parses lcov text into per-file counts. */
export function parseLcov(text: string): FileCoverage[] {
  const out: FileCoverage[] = [];
  let cur: FileCoverage | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const [key, value = ""] = line.split(/:(.*)/s);
    if (key === "SF") {
      cur = { file: value, lines: 0, linesHit: 0, branches: 0, branchesHit: 0 };
    } else if (cur !== undefined) {
      if (key === "LF") cur.lines = Number(value);
      else if (key === "LH") cur.linesHit = Number(value);
      else if (key === "BRF") cur.branches = Number(value);
      else if (key === "BRH") cur.branchesHit = Number(value);
      else if (line === "end_of_record") {
        out.push(cur);
        cur = undefined;
      }
    }
  }
  return out;
}

function pct(hit: number, found: number): string {
  return found === 0 ? "   -  " : `${((100 * hit) / found).toFixed(1).padStart(5)}%`;
}

/**
 * Conservative counts for a source file the campaign never loaded (deno coverage has no record of
 * it): every non-blank line outside comments is an executable line, and each branch point
 * (`if`, `while`, `for`, `case`/`default`, `catch`, `?`, `??`, `&&`, `||`, `?.`) counts as two
 * branches; all unhit. Over-counting is intended: an untested file must lower the percentages.
 */
export function estimateUnloaded(file: string, text: string): FileCoverage {
  let lines = 0, branches = 0, inBlock = false;
  for (const raw of text.split("\n")) {
    let code = "";
    let rest = raw;
    while (rest.length > 0) {
      if (inBlock) {
        const end = rest.indexOf("*/");
        if (end < 0) rest = "";
        else {
          rest = rest.slice(end + 2);
          inBlock = false;
        }
      } else {
        const start = rest.indexOf("/*");
        const lineComment = rest.indexOf("//");
        if (lineComment >= 0 && (start < 0 || lineComment < start)) {
          code += rest.slice(0, lineComment);
          rest = "";
        } else if (start >= 0) {
          code += rest.slice(0, start);
          rest = rest.slice(start + 2);
          inBlock = true;
        } else {
          code += rest;
          rest = "";
        }
      }
    }
    if (code.trim() === "") continue;
    lines++;
    const points = code.match(/\b(if|while|for|case|default|catch)\b|\?\?|\?\.?|&&|\|\|/g);
    branches += 2 * (points?.length ?? 0);
  }
  return { file, lines, linesHit: 0, branches, branchesHit: 0 };
}

/** The result of {@link summarizeCoverage}. */
export interface CoverageSummary {
  /** The table printed by `fuzz:coverage` (totals include the never-loaded files). */
  text: string;
  /** Lines hit / lines found over all files, never-loaded files included, in percent. */
  linePct: number;
  /** Branches hit / branches found, likewise. */
  branchPct: number;
  /** Per-file counts of the loaded files under the prefixes (paths relative to the root). */
  files: FileCoverage[];
  /** Estimated counts ({@link estimateUnloaded}) of the never-loaded files, sorted by path. */
  unloaded: FileCoverage[];
}

/**
 * Pure core of `fuzz:coverage`: parses `lcov` (from `deno coverage --lcov`), keeps the files under
 * `prefixes` (relative to `root`), and counts every file of `sources` (relative path -> text: all
 * `.ts` files under the prefixes) that lcov does not mention as never loaded, with all its lines
 * and branches unhit ({@link estimateUnloaded}), in the totals.
 */
export function summarizeCoverage(
  lcov: string,
  root: string,
  prefixes: readonly string[],
  sources: ReadonlyMap<string, string>,
  notCounted: ReadonlyMap<string, string> = new Map(),
): CoverageSummary {
  const rel = (f: string) => (f.startsWith(root) ? f.slice(root.length).replace(/^\/+/, "") : f);
  const files = parseLcov(lcov).map((f) => ({ ...f, file: rel(f.file) }))
    .filter((f) => prefixes.some((p) => f.file.startsWith(p)))
    .sort((a, b) => a.file.localeCompare(b.file));
  const loaded = new Set(files.map((f) => f.file));
  const unloaded = [...sources].filter(([f]) => !loaded.has(f))
    .map(([f, text]) => estimateUnloaded(f, text))
    .sort((a, b) => a.file.localeCompare(b.file));
  return { ...coverageTable(files, "", prefixes, unloaded, notCounted), files, unloaded };
}

/**
 * The coverage table of the files under `prefixes` (paths relative to `root`), with totals.
 * `unloaded` are the files the campaign never loaded, with estimated counts (see
 * {@link estimateUnloaded}); they are listed and counted, all unhit, in the totals.
 * `notCounted` (path relative to the root -> why) are listed with their reason but left out of
 * the totals (see {@link NOT_ENGINE}).
 */
export function coverageTable(
  files: readonly FileCoverage[],
  root: string,
  prefixes: readonly string[],
  unloaded: readonly FileCoverage[] = [],
  notCounted: ReadonlyMap<string, string> = new Map(),
): { text: string; linePct: number; branchPct: number } {
  const rel = (f: string) => (f.startsWith(root) ? f.slice(root.length).replace(/^\/+/, "") : f);
  const sel = files.filter((f) => prefixes.some((p) => rel(f.file).startsWith(p)))
    .sort((a, b) => rel(a.file).localeCompare(rel(b.file)));
  const w = Math.max(
    4,
    ...sel.map((f) => rel(f.file).length),
    ...unloaded.map((f) => f.file.length),
  );
  const rows = [`${"file".padEnd(w)}   lines  branches`];
  let lf = 0, lh = 0, bf = 0, bh = 0;
  for (const f of sel) {
    const why = notCounted.get(rel(f.file));
    if (why !== undefined) {
      rows.push(
        `${rel(f.file).padEnd(w)}  ${pct(f.linesHit, f.lines)}  ${
          pct(f.branchesHit, f.branches)
        }  not in the totals: ${why}`,
      );
      continue;
    }
    lf += f.lines;
    lh += f.linesHit;
    bf += f.branches;
    bh += f.branchesHit;
    rows.push(
      `${rel(f.file).padEnd(w)}  ${pct(f.linesHit, f.lines)}  ${pct(f.branchesHit, f.branches)}`,
    );
  }
  for (const u of unloaded) {
    if (notCounted.has(u.file)) continue;
    lf += u.lines;
    bf += u.branches;
    rows.push(
      `${u.file.padEnd(w)}  ${pct(0, u.lines)}  ${
        pct(0, u.branches)
      }  never loaded by any target ` +
        `(~${u.lines} lines, ~${u.branches} branches, counted unhit)`,
    );
  }
  rows.push(`${"total".padEnd(w)}  ${pct(lh, lf)}  ${pct(bh, bf)}`);
  return {
    text: rows.join("\n"),
    linePct: lf === 0 ? 0 : (100 * lh) / lf,
    branchPct: bf === 0 ? 0 : (100 * bh) / bf,
  };
}

/** Catalogue codes not in `reached`, in catalogue order. */
export function unreachedCodes(reached: readonly string[]): string[] {
  const r = new Set(reached);
  return CATALOGUE_CODES.filter((c) => !r.has(c));
}

function listTs(dir: string, rel: string): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) out.push(...listTs(`${dir}/${e.name}`, `${rel}${e.name}/`));
      else if (e.name.endsWith(".ts")) out.push(`${rel}${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

const PREFIXES = ["src/virtio/", "src/dma/"];

/**
 * Files under the prefixes that are not engine code, shown in the table but left out of the
 * totals, with the reason printed beside them (argued in docs/FUZZING.md, "Coverage goal").
 */
export const NOT_ENGINE: ReadonlyMap<string, string> = new Map([
  [
    "src/virtio/ring_builder.ts",
    "test-support ring writer (no engine code, no checks; see docs/FUZZING.md)",
  ],
]);

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "deno task fuzz:coverage [deno task fuzz flags]\n\n" +
        "Runs the fuzz campaign under `deno run --coverage=coverage/fuzz` (same flags as\n" +
        "`deno task fuzz`, e.g. --seconds 60 --target NAME), then prints line and branch coverage\n" +
        "of src/virtio/ and src/dma/ and the catalogued error codes no target reached. Exit status\n" +
        "is the campaign's. The campaign's JSON report is kept in coverage/fuzz-report.json, the\n" +
        "coverage summary (per-file counts, unreached codes) in coverage/fuzz-coverage.json.",
    );
    return 0;
  }
  if (args.includes("--json") || args.includes("--replay") || args.includes("--list")) {
    console.error(
      "fuzz:coverage: --json, --replay and --list are not supported here. Fix: use deno task fuzz",
    );
    return 2;
  }
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const dir = `${root}/coverage/fuzz`;
  const report = `${root}/coverage/fuzz-report.json`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const deno = Deno.execPath();
  const run = await new Deno.Command(deno, {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      `--coverage=${dir}`,
      `${root}/fuzz/main.ts`,
      ...args,
      "--json",
      report,
    ],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (run.code === 2) return 2;
  const cov = await new Deno.Command(deno, {
    args: ["coverage", dir, "--lcov"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!cov.success) {
    console.error(`fuzz:coverage: deno coverage failed:\n${new TextDecoder().decode(cov.stderr)}`);
    return 2;
  }
  const sources = new Map(
    PREFIXES.flatMap((p) => listTs(`${root}/${p}`, p))
      .map((f) => [f, Deno.readTextFileSync(`${root}/${f}`)] as const),
  );
  const lcov = new TextDecoder().decode(cov.stdout);
  const t = summarizeCoverage(lcov, root, PREFIXES, sources, NOT_ENGINE);
  const unloaded = t.unloaded;
  const reached = parseReport(report, JSON.parse(await Deno.readTextFile(report))).errorCodes;
  const missing = unreachedCodes(reached);
  console.log(`\nCoverage of ${PREFIXES.join(" and ")} by the campaign (deno coverage, lcov):\n`);
  console.log(t.text);
  console.log(
    `\nlines ${t.linePct.toFixed(1)}% (goal >= 95%: ${t.linePct >= 95 ? "met" : "NOT met"}), ` +
      `branches ${t.branchPct.toFixed(1)}%` +
      (unloaded.length > 0
        ? `; ${unloaded.length} file(s) never loaded, counted in the totals with every line and ` +
          "branch unhit (lines estimated conservatively as the non-blank lines outside comments, " +
          "branches as two per if/while/for/case/catch/?/??/&&/||)"
        : ""),
  );
  const inCatalogue = reached.filter((c) => CATALOGUE_CODES.includes(c)).length;
  console.log(
    `\nError codes: ${inCatalogue} of ${CATALOGUE_CODES.length} catalogued codes reached` +
      (missing.length === 0 ? " (all)." : `; never reached:\n  ${missing.join("\n  ")}`),
  );
  // Check sites, not codes (fuzz/check_sites.ts): each call site of a shared rule.
  const rulesFile = "src/virtio/rules.ts";
  const sites = checkSiteSummary(countSiteHits(
    findCheckSites(sources, ruleNames(sources.get(rulesFile) ?? ""), [rulesFile]),
    parseLcovDetail(lcov, root),
    sources,
  ));
  console.log(`\nViolations raised per call site of a rule of ${rulesFile}:\n\n${sites.text}`);
  const summary = `${root}/coverage/fuzz-coverage.json`;
  await Deno.writeTextFile(
    summary,
    JSON.stringify(
      {
        prefixes: PREFIXES,
        notCounted: Object.fromEntries(NOT_ENGINE),
        linePct: t.linePct,
        branchPct: t.branchPct,
        files: t.files,
        unloaded: t.unloaded,
        reachedCodes: reached.filter((c) => CATALOGUE_CODES.includes(c)),
        unreachedCodes: missing,
        checkSites: {
          sites: sites.sites,
          multiSiteRules: sites.multiSiteRules,
          unreached: sites.unreached,
        },
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nfuzz:coverage: summary written to coverage/fuzz-coverage.json`);
  return run.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
