/**
 * `deno task explain <topology.json | preset | corpus entry>`: resolves a platform topology and
 * prints, for each virtio device, the path of one DMA layer by layer, the verdict obtained by
 * running buffers through the rings, and where the driver's and the device's views part.
 *
 * Flags: `--json` (machine output), `--list` (presets), `--all` (every preset, summary),
 * `--help`. Exit status: 0 when every recorded verdict matches, 1 otherwise, 2 on bad input.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  didYouMean,
  explainJson,
  explainText,
  matchesExpectation,
  parseTopology,
  predictionHolds,
  PRESET_NAMES,
  PRESETS,
  resolveTopology,
  TopologyError,
  type TopologyResolution,
} from "../src/mod.ts";

const HELP = `deno task explain <topology.json | preset-name> [--json]
deno task explain --list | --all | --help

Resolves a platform topology (docs/topology.schema.json) and, for every virtio device, prints
the negotiated features, the driver's DMA layers and the device's translation layers (with the
rule behind each), one DMA traced layer by layer (driver address -> bus address -> GPA), the
verdict from running buffers through the rings (ok, corrupt, fault, refused, probe-fails,
stale-window) and where the two views part.

  <file.json>   a topology file, or a fuzz corpus entry whose "input" is a topology
  <preset>      a preset name (see --list), with or without .json
  --json        machine-readable output
  --list        list the presets with their catalogue rows and recorded verdicts
  --all         resolve every preset and print one line each
  --help        this text

Exit status: 0 all recorded verdicts match, 1 a mismatch, 2 invalid input.`;

/** Bad input: printed on stderr by {@link main}, exit status 2. */
class UsageError extends Error {}

function fail(msg: string): never {
  throw new UsageError(msg);
}

async function load(arg: string): Promise<{ json: unknown; file: string }> {
  const bare = arg.replace(/\.json$/, "");
  if (PRESETS[bare] && !arg.includes("/")) return { json: PRESETS[bare], file: `preset ${bare}` };
  let text: string;
  try {
    text = await Deno.readTextFile(arg);
  } catch (e) {
    const guess = arg.includes("/") ? undefined : didYouMean(bare, PRESET_NAMES);
    fail(
      `explain: ${arg}: cannot read (${(e as Error).message.split("\n")[0]}) and not a preset. ` +
        (guess ? `Did you mean the preset "${guess}"? ` : "") +
        "Fix: pass a topology file or a preset name (see --list)",
    );
  }
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    // A fuzz corpus entry carries the topology under "input".
    if (json && typeof json === "object" && "input" in json && !("machine" in json)) {
      return { json: json.input, file: `${arg} (corpus input)` };
    }
    return { json, file: arg };
  } catch (e) {
    fail(`explain: ${arg}: not valid JSON: ${(e as Error).message.split("\n")[0]}`);
  }
}

function resolveOrFail(json: unknown, file: string): TopologyResolution {
  try {
    return resolveTopology(parseTopology(json, file));
  } catch (e) {
    if (e instanceof TopologyError) fail(e.message);
    throw e;
  }
}

/**
 * Runs the CLI.
 * @param argv the arguments (without the program name).
 * @returns the exit status: 0 all recorded verdicts match, 1 a mismatch, 2 invalid input.
 */
export async function main(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(e.message);
    return 2;
  }
}

function args(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        all: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(
      `explain: ${(e as Error).message.split("\n")[0]}. Fix: use --json, --list, --all or ` +
        "--help",
    );
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.list) {
    const rows = PRESET_NAMES.map((n) => {
      const p = PRESETS[n] as {
        catalogue?: string[];
        title: string;
        expect?: Record<string, { verdict: string }>;
        deviation?: string;
      };
      const exp = Object.entries(p.expect ?? {}).map(([d, e]) => `${d}=${e.verdict}`).join(" ");
      const deviates = p.deviation !== undefined;
      return { name: n, catalogue: p.catalogue ?? [], title: p.title, expect: exp, deviates };
    });
    if (values.json) console.log(JSON.stringify(rows, null, 2));
    else {for (const r of rows) {
        console.log(
          `${r.catalogue.join(",").padEnd(5)} ${r.name.padEnd(54)} ${r.expect}` +
            (r.deviates ? "  (deviates from the catalogue: see explain)" : ""),
        );
      }}
    return 0;
  }
  if (values.all) {
    let bad = 0;
    const all: unknown[] = [];
    for (const [i, n] of PRESET_NAMES.entries()) {
      const r = resolveOrFail(PRESETS[n], `preset ${n}`);
      const ok = r.devices.every((d) => matchesExpectation(d) && predictionHolds(d));
      if (!ok) bad++;
      if (values.json) all.push(explainJson(r));
      else {
        console.log(
          `[${i + 1}/${PRESET_NAMES.length}] ${ok ? "ok  " : "FAIL"} ${n}: ` +
            r.devices.map((d) =>
              `${d.id}=${d.observed.verdict}${d.observed.layer ? `@${d.observed.layer}` : ""}`
            ).join(" "),
        );
      }
    }
    if (values.json) console.log(JSON.stringify(all, null, 2));
    else console.log(`${PRESET_NAMES.length - bad} presets match, ${bad} do not`);
    return bad === 0 ? 0 : 1;
  }
  if (positionals.length !== 1) {
    fail(
      `explain: expected one topology file or preset name, got ${positionals.length}. ` +
        "Fix: e.g. deno task explain q35-intel-iommu-driver-ignores-quirk (see --help)",
    );
  }
  const { json, file } = await load(positionals[0]);
  const r = resolveOrFail(json, file);
  console.log(values.json ? JSON.stringify(explainJson(r), null, 2) : explainText(r));
  return r.devices.every((d) => matchesExpectation(d) && predictionHolds(d)) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
