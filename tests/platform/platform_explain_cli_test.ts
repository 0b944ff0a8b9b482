/**
 * `deno task explain` at the edge: a bad topology file is a named error on stderr (file, field,
 * fix) with exit status 2, never an uncaught exception.
 */

import assert from "node:assert/strict";
import { main } from "../../tools/explain.ts";
import { PRESETS } from "../../src/mod.ts";

/** Runs the CLI with console output captured. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(argv);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("explain CLI: a bad address in a topology file names file and field, exit 2", async () => {
  const t = structuredClone(PRESETS["q35-intel-iommu-lazy-stale-window"]) as unknown as {
    memory: Record<string, unknown>[];
  };
  t.memory[0].size = "0xzz";
  const file = await Deno.makeTempFile({ prefix: "virtq-explain-", suffix: ".json" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(t));
    const r = await run([file]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`^${file}: invalid topology`));
    assert.match(r.err, /memory\[0\]\.size/);
    assert.match(r.err, /hex string such as "0x80000000"/);
    assert.equal(r.out, "");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("explain CLI: unknown options, missing files and bad JSON exit 2 with a message", async () => {
  const bogus = await run(["--bogus"]);
  assert.equal(bogus.code, 2);
  assert.match(bogus.err, /--bogus/);
  const missing = await run(["/tmp/virtq-no-such-topology.json"]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /cannot read/);
  const file = await Deno.makeTempFile({ prefix: "virtq-explain-", suffix: ".json" });
  try {
    await Deno.writeTextFile(file, "{ nope");
    const bad = await run([file]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /not valid JSON/);
  } finally {
    await Deno.remove(file);
  }
});
