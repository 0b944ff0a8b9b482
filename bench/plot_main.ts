/**
 * `deno task bench:plot [results.json] [--out FILE]`: renders the scaling curves of a results
 * file (from `deno task bench --json FILE` or a baseline) to an SVG.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { loadResults } from "./results.ts";
import { plotOverlay, plotResults } from "./plot.ts";

const HELP = `deno task bench:plot [results.json] [--out FILE]
deno task bench:plot BEFORE.json AFTER.json [--out FILE]

Renders throughput vs queue size, vs payload (with the memcpy line), per DMA mode (on the
payloads every mode measured) and vs chain length from a results file to an SVG, each point with
a spread bar (interquartile range and cross-round spread). With two files: a before/after
overlay, the first solid, the second dashed.
  results.json   default bench/results.json (write one with: deno task bench --json FILE)
  --out FILE     default: the (first) input path with .svg (overlay: -vs-<second>.svg)
  -h, --help     this text`;

if (import.meta.main) {
  try {
    const a = parseArgs(Deno.args, {
      string: ["out"],
      boolean: ["help"],
      alias: { h: "help" },
      unknown: (arg: string) => {
        if (arg.startsWith("-")) throw new Error(`unknown option ${arg}; see --help`);
        return true;
      },
    });
    if (a.help) {
      console.log(HELP);
      Deno.exit(0);
    }
    if (a._.length > 2) throw new Error("at most two results files. Fix: A.json [B.json]");
    const input = String(a._[0] ?? "bench/results.json");
    const second = a._[1] === undefined ? undefined : String(a._[1]);
    const base = (f: string) => f.replace(/^.*\//, "").replace(/\.json$/, "");
    const out = typeof a.out === "string" && a.out
      ? a.out
      : second === undefined
      ? input.replace(/(\.json)?$/, ".svg")
      : input.replace(/(\.json)?$/, `-vs-${base(second)}.svg`);
    const svg = second === undefined
      ? plotResults(await loadResults(input))
      : plotOverlay(await loadResults(input), await loadResults(second), [
        base(input),
        base(second),
      ]);
    await Deno.writeTextFile(out, svg);
    console.log(`wrote ${out}`);
  } catch (e) {
    console.error(`bench:plot: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
}
