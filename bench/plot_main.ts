/**
 * `deno task bench:plot [results.json] [--out FILE]`: renders the scaling curves of a results
 * file (from `deno task bench --json FILE` or a baseline) to an SVG.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { loadResults } from "./results.ts";
import { plotResults } from "./plot.ts";

const HELP = `deno task bench:plot [results.json] [--out FILE]

Renders throughput vs queue size, vs payload (with the memcpy line), per DMA mode and vs chain
length from a results file to an SVG.
  results.json   default bench/results.json (write one with: deno task bench --json FILE)
  --out FILE     default: the input path with .svg instead of .json
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
    const input = String(a._[0] ?? "bench/results.json");
    const out = typeof a.out === "string" && a.out ? a.out : input.replace(/(\.json)?$/, ".svg");
    const svg = plotResults(await loadResults(input));
    await Deno.writeTextFile(out, svg);
    console.log(`wrote ${out}`);
  } catch (e) {
    console.error(`bench:plot: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
