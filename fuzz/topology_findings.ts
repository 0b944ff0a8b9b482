/**
 * `deno task fuzz:topology-findings`: draws random valid topologies (the `topology` fuzz target's
 * generator), resolves each, and writes the first topology of every kind of disagreement (driver
 * layers -> device layers: verdict@layer) as a JSON file that `deno task explain <file>` replays.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { disagreementKind, findDisagreements } from "./targets/topology.ts";
import { parseTopology, resolveTopology } from "../src/mod.ts";

const HELP = `deno task fuzz:topology-findings [--seed N] [--runs N] [--out DIR] [--json]

Draws --runs random topologies from --seed (defaults 1 and 500), keeps one topology per kind of
disagreement between the driver's and the device's views, and writes each as DIR/<name>.json
(default DIR: /tmp/virtq-topology-findings). Replay one with: deno task explain DIR/<name>.json`;

function usage(msg: string): never {
  console.error(`fuzz:topology-findings: ${msg} (see --help)`);
  Deno.exit(2);
}

let values: { seed: string; runs: string; out: string; json: boolean; help: boolean };
try {
  // a value starting with "-" (e.g. --runs -1) is taken as the value, then range-checked
  const args = Deno.args.flatMap((a, i, all) =>
    /^-\d/.test(a) && /^--(seed|runs|out)$/.test(all[i - 1] ?? "") ? [] : [
      /^--(seed|runs|out)$/.test(a) && /^-\d/.test(all[i + 1] ?? "") ? `${a}=${all[i + 1]}` : a,
    ]
  );
  values = parseArgs({
    args,
    options: {
      seed: { type: "string", default: "1" },
      runs: { type: "string", default: "500" },
      out: { type: "string", default: "/tmp/virtq-topology-findings" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (e) {
  usage(`${(e as Error).message.split("\n")[0]}. Fix: use --seed N, --runs N, --out DIR, --json`);
}
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const seed = Number(values.seed), runs = Number(values.runs);
if (!/^-?\d+$/.test(values.seed) || !Number.isSafeInteger(seed)) {
  usage(`--seed ${values.seed}: not an integer. Fix: pass e.g. --seed 1`);
}
if (!/^\d+$/.test(values.runs) || !Number.isSafeInteger(runs) || runs < 1) {
  usage(`--runs ${values.runs}: not a positive integer. Fix: pass e.g. --runs 500`);
}
try {
  await Deno.mkdir(values.out, { recursive: true });
  const probe = `${values.out}/.write-probe`;
  await Deno.writeTextFile(probe, "");
  await Deno.remove(probe);
} catch (e) {
  usage(
    `--out ${values.out}: cannot write there (${
      (e as Error).message.split("\n")[0]
    }). Fix: name a writable directory`,
  );
}

const t0 = performance.now();
console.error(`drawing ${runs} topologies from seed ${seed}...`);
const found = findDisagreements(seed, runs);
const rows: { file: string; kind: string }[] = [];
for (const [kind, topo] of found) {
  const file = `${values.out}/${topo.name}.json`;
  await Deno.writeTextFile(file, JSON.stringify(topo, null, 2) + "\n");
  // Check the file replays to the same kind before reporting it.
  const r = resolveTopology(parseTopology(topo, file));
  const again = r.devices.map(disagreementKind);
  rows.push({ file, kind: again.includes(kind) ? kind : `${kind} (REPLAY DIFFERS)` });
}
if (values.json) console.log(JSON.stringify({ seed, runs, findings: rows }, null, 2));
else {
  for (const r of rows) console.log(`${r.file}  ${r.kind}`);
  console.log(
    `${rows.length} kinds of disagreement in ${runs} topologies (${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s); replay: deno task explain <file>`,
  );
}
