/** `deno task bench` edges: negative numbers, --compare with a file and no common case, --list --filter. */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { parseBenchArgs } from "../../bench/args.ts";
import { caseResult, results } from "./bench_fixture.ts";

const ROOT = new URL("../../", import.meta.url);

async function bench(args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-sys", "bench/main.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout), err: d.decode(r.stderr) };
}

Deno.test("bench args: a negative number is a range error naming the flag, not an unknown option", () => {
  for (
    const [flag, want] of [["--rounds", "1..100"], ["--time", "1..600000"], [
      "--threshold",
      "0..1000",
    ]]
  ) {
    const e = assertThrows(() => parseBenchArgs([flag, "-1"]));
    assertEquals((e as Error).message, `${flag} -1: expected ${want}`);
  }
});

Deno.test("bench --compare FILE with no case in common exits 2 before measuring; --list honours --filter", async () => {
  const file = await Deno.makeTempFile({ prefix: "virtq-bench-", suffix: ".json" });
  try {
    const other = results([caseResult({ engine: "split", size: 4096, batch: 7 }, 1000)]);
    other.results[0].name = "a case this run does not have";
    await Deno.writeTextFile(file, JSON.stringify(other));
    const r = await bench(["--smoke", "--compare", file]);
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, "no case of this run is in the baseline");
    assertEquals(r.out, "", "nothing was measured");
    const l = await bench(["--list", "--filter", "^split/identity q256 b32 p64 c1$"]);
    assertEquals(l.code, 0, l.err);
    const cases = new Set(l.out.split("\n").filter((x) => x.startsWith("  ")).map((x) => x.trim()));
    // the filtered case, and the speed-of-light reference every selection carries
    assertEquals([...cases].sort(), ["sol q256 b32 p64 c1", "split/identity q256 b32 p64 c1"]);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("bench: the bounce-copy floor is measured before the cases (not in the workers' teardown after them)", async () => {
  const r = await bench([
    "--suite",
    "dma",
    "--filter",
    "^split/(identity|swiotlb) q256 b32 p1500 c1$",
    "--rounds",
    "1",
    "--time",
    "5",
    "--no-alloc",
  ]);
  assertEquals(r.code, 0, r.err);
  const floor = r.err.indexOf("bounce-copy floor at 1500 B");
  const firstCase = r.err.indexOf("[1/");
  assert(floor >= 0 && firstCase > floor, r.err);
  assertStringIncludes(r.out, "split: swiotlb vs identity time, 1500 B: bounce-copy floor");
  assertStringIncludes(r.out, "measured before the cases");
});
