/**
 * `deno task schema`: writes `docs/topology.schema.json`, the JSON Schema of topology files
 * (from the zod schema), so editors can validate and complete them. `--check` only compares.
 *
 * @module
 */

import { topologyJsonSchema } from "../src/mod.ts";

const PATH = new URL("../docs/topology.schema.json", import.meta.url);
const text = JSON.stringify(topologyJsonSchema(), null, 2) + "\n";

const unknown = Deno.args.find((a) => !["--help", "-h", "--check"].includes(a));
if (unknown !== undefined) {
  console.error(
    `schema: ${unknown}: ${
      unknown.startsWith("-") ? "unknown flag" : "unexpected argument"
    }. Fix: use --check or --help`,
  );
  Deno.exit(2);
}
if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log("deno task schema [--check]: write (or check) docs/topology.schema.json");
} else if (Deno.args.includes("--check")) {
  const cur = await Deno.readTextFile(PATH).catch(() => "");
  if (cur !== text) {
    console.error("docs/topology.schema.json is stale: run `deno task schema`");
    Deno.exit(1);
  }
  console.log("docs/topology.schema.json is up to date");
} else {
  await Deno.writeTextFile(PATH, text);
  console.log(`wrote ${PATH.pathname} (${text.length} bytes)`);
}
