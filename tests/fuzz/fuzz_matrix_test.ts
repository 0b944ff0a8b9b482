import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { MatrixUsageError, parseMatrixArgs, runMatrix } from "../../fuzz/matrix.ts";
import { type FuzzReport, parseReport } from "../../fuzz/report.ts";

const MAIN = new URL("./_example_fuzz_main.ts", import.meta.url).href;

async function unsharded(dir: string, seed: number, runs: number): Promise<FuzzReport> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      MAIN,
      "--workers",
      "0",
      "--seed",
      String(seed),
      "--runs",
      String(runs),
      "--corpus",
      `${dir}/corpus-one`,
      "--json",
      `${dir}/one.json`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(r.code, 1, new TextDecoder().decode(r.stderr));
  return parseReport("one.json", JSON.parse(await Deno.readTextFile(`${dir}/one.json`)));
}

/** What must agree between one run and the merged shards: units, seeds, runs, findings. */
function coverage(rep: FuzzReport) {
  return [...rep.targets].sort((a, b) => a.target.localeCompare(b.target)).map((t) => ({
    target: t.target,
    units: t.units,
    runs: t.runs,
    slices: t.slices,
    findings: t.failures.map((f) => `${f.signature.hash} ${f.seed} ${f.path}`).sort(),
    errorCodes: t.errorCodes,
  }));
}

Deno.test("fuzz:matrix: the merged shards cover exactly the units, seeds, runs and findings of one unsharded run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-matrix-" });
  try {
    const seed = 4242;
    const runs = 400;
    const out: string[] = [];
    const err: string[] = [];
    const o = parseMatrixArgs([
      "--shards",
      "3",
      "--seed",
      String(seed),
      "--runs",
      String(runs),
      "--workers",
      "0",
      "--corpus",
      `${dir}/corpus`,
      "--out",
      `${dir}/m`,
    ])!;
    const code = await runMatrix(o, (s) => void out.push(s), (s) => void err.push(s), MAIN);
    assertEquals(code, 1, err.join("") + out.join("")); // the planted faults are found
    for (const i of [1, 2, 3]) assertStringIncludes(out.join(""), `shard ${i}/3 exited 1`);
    const merged = parseReport(
      "merged.json",
      JSON.parse(await Deno.readTextFile(`${dir}/m/merged.json`)),
    );
    assertEquals(merged.campaigns.map((c) => c.shard.index).sort(), [1, 2, 3]);
    const xml = await Deno.readTextFile(`${dir}/m/merged.xml`);
    assertStringIncludes(xml, '<property name="shard" value="');
    const one = await unsharded(dir, seed, runs);
    assertEquals(coverage(merged), coverage(one));
    assert(merged.totals.failures >= 3, "every planted fault found");
    assertEquals(merged.totals.runs, one.totals.runs);

    // a missing shard fails the merge
    await Deno.remove(`${dir}/m/shard-2.json`);
    const e2: string[] = [];
    const { mergeMain } = await import("../../fuzz/merge.ts");
    assertEquals(
      mergeMain(
        [`${dir}/m/shard-1.json`, `${dir}/m/shard-3.json`],
        () => {},
        (s) => void e2.push(s),
      ),
      2,
    );
    assertStringIncludes(e2.join(""), "shard(s) 2/3 of seed 4242 missing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz:matrix: bad flags are one-line usage errors", () => {
  assertEquals(parseMatrixArgs(["--help"]), null);
  for (
    const [args, want] of [
      [["--seed", "1"], "--shards: missing"],
      [["--shards", "2"], "--seed: missing"],
      [["--shards", "-1", "--seed", "1"], `--shards: "-1" is not an integer in 1..64`],
      [["--shards", "0", "--seed", "1"], '--shards: "0" is not an integer in 1..64'],
      [["--shards", "2", "--seed", "x"], '--seed: "x" is not'],
      [["--shards", "2", "--seed", "1", "--bogus"], "--bogus: unknown flag"],
    ] as const
  ) {
    const e = assertThrows(() => parseMatrixArgs([...args]), MatrixUsageError);
    assertStringIncludes(e.message, want);
    assertStringIncludes(e.message, "Fix:");
  }
});
