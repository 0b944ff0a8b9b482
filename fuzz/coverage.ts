/**
 * `deno task fuzz:coverage [fuzz flags]`: runs the campaign (`fuzz/main.ts`, same flags) under
 * `deno run --coverage`, then prints line and branch coverage of `src/virtio/` and `src/dma/`
 * (from `deno coverage --lcov`) and the catalogued error codes the campaign never reached (from
 * the codes targets note through `fuzz/observe.ts`). Goal: >= 95% of lines, every code reached.
 * Coverage slows the engine down (about 2.8x), so the same budget does fewer runs.
 * @module
 */

import { CATALOGUE_CODES } from "./catalogue.ts";
import { parseReport } from "./report.ts";

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
 * The coverage table of the files under `prefixes` (paths relative to `root`), with totals, and
 * the `.ts` files under those prefixes the campaign never loaded (`unloaded`, counted as 0%).
 */
export function coverageTable(
  files: readonly FileCoverage[],
  root: string,
  prefixes: readonly string[],
  unloaded: readonly string[] = [],
): { text: string; linePct: number; branchPct: number } {
  const rel = (f: string) => (f.startsWith(root) ? f.slice(root.length).replace(/^\/+/, "") : f);
  const sel = files.filter((f) => prefixes.some((p) => rel(f.file).startsWith(p)))
    .sort((a, b) => rel(a.file).localeCompare(rel(b.file)));
  const w = Math.max(4, ...sel.map((f) => rel(f.file).length), ...unloaded.map((f) => f.length));
  const rows = [`${"file".padEnd(w)}   lines  branches`];
  let lf = 0, lh = 0, bf = 0, bh = 0;
  for (const f of sel) {
    lf += f.lines;
    lh += f.linesHit;
    bf += f.branches;
    bh += f.branchesHit;
    rows.push(
      `${rel(f.file).padEnd(w)}  ${pct(f.linesHit, f.lines)}  ${pct(f.branchesHit, f.branches)}`,
    );
  }
  for (const u of unloaded) rows.push(`${u.padEnd(w)}  never loaded by any target`);
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
  const files = parseLcov(new TextDecoder().decode(cov.stdout));
  const loaded = new Set(files.map((f) => f.file));
  const unloaded = PREFIXES.flatMap((p) => listTs(`${root}/${p}`, p))
    .filter((f) => !loaded.has(`${root}/${f}`)).sort();
  const t = coverageTable(files, root, PREFIXES, unloaded);
  const reached = parseReport(report, JSON.parse(await Deno.readTextFile(report))).errorCodes;
  const missing = unreachedCodes(reached);
  console.log(`\nCoverage of ${PREFIXES.join(" and ")} by the campaign (deno coverage, lcov):\n`);
  console.log(t.text);
  console.log(
    `\nlines ${t.linePct.toFixed(1)}% (goal >= 95%: ${t.linePct >= 95 ? "met" : "NOT met"}), ` +
      `branches ${t.branchPct.toFixed(1)}%` +
      (unloaded.length > 0 ? `; ${unloaded.length} file(s) never loaded (not in the totals)` : ""),
  );
  const inCatalogue = reached.filter((c) => CATALOGUE_CODES.includes(c)).length;
  console.log(
    `\nError codes: ${inCatalogue} of ${CATALOGUE_CODES.length} catalogued codes reached` +
      (missing.length === 0 ? " (all)." : `; never reached:\n  ${missing.join("\n  ")}`),
  );
  const summary = `${root}/coverage/fuzz-coverage.json`;
  await Deno.writeTextFile(
    summary,
    JSON.stringify(
      {
        prefixes: PREFIXES,
        linePct: t.linePct,
        branchPct: t.branchPct,
        files: files.filter((f) => PREFIXES.some((p) => f.file.startsWith(`${root}/${p}`)))
          .map((f) => ({ ...f, file: f.file.slice(root.length + 1) })),
        unloaded,
        reachedCodes: reached.filter((c) => CATALOGUE_CODES.includes(c)),
        unreachedCodes: missing,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nfuzz:coverage: summary written to coverage/fuzz-coverage.json`);
  return run.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
