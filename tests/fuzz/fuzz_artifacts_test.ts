import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { type FuzzEnv, fuzzMain } from "../../fuzz/main.ts";
import { parseReport } from "../../fuzz/report.ts";
import { isTimeout } from "../../fuzz/artifacts.ts";
import { COPY_FAULTS, makeCopyTarget, makeIndexTarget } from "./fuzz_examples.ts";

function env(faulty = true) {
  const out: string[] = [];
  const err: string[] = [];
  const e: FuzzEnv = {
    targets: [makeCopyTarget(faulty ? COPY_FAULTS["flip-byte-13"] : undefined), makeIndexTarget()],
    registryUrl: new URL("./fuzz_examples.ts", import.meta.url).href,
    out: (s) => void out.push(s),
    err: (s) => void err.push(s),
    isTty: false,
    cores: 1,
  };
  return { env: e, out: () => out.join(""), err: () => err.join("") };
}

Deno.test("artifacts, --replay DIR and --replay-seed/--replay-path: a finding is replayable three ways", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-artifacts-" });
  try {
    const c = env();
    const code = await fuzzMain([
      "--workers",
      "0",
      "--runs",
      "2000",
      "--seed",
      "5",
      "--corpus",
      `${dir}/corpus`,
      "--artifacts",
      `${dir}/art`,
      "--json",
      `${dir}/r.json`,
    ], c.env);
    assertEquals(code, 1);
    const files = [...Deno.readDirSync(`${dir}/art`)].map((e) => e.name);
    assertEquals(files.length, 1);
    assertMatch(files[0], /^failure-example-copy-[0-9a-f]{16}\.json$/);
    assertStringIncludes(c.out(), `artifact file(s) in ${dir}/art`);

    const r1 = env();
    assertEquals(await fuzzMain(["--replay", `${dir}/art`], r1.env), 1, r1.err());
    assertStringIncludes(r1.out(), "STILL FAILS: example-copy/round-trip/-");
    assertStringIncludes(r1.out(), "replayed 1 file(s)");

    const f = parseReport("r", JSON.parse(await Deno.readTextFile(`${dir}/r.json`))).targets[0]
      .failures[0];
    const r2 = env();
    assertEquals(
      await fuzzMain([
        "--target",
        "example-copy",
        "--replay-seed",
        String(f.seed),
        "--replay-path",
        f.path,
      ], r2.env),
      1,
    );
    assertStringIncludes(r2.out(), "STILL FAILS: example-copy/round-trip/-");
    const fixed = env(false);
    assertEquals(
      await fuzzMain(
        ["--target", "example-copy", "--replay-seed", String(f.seed), "--replay-path", f.path],
        fixed.env,
      ),
      0,
    );
    for (
      const [args, want] of [
        [["--replay-seed", "1"], "--replay-seed: needs its partner flag"],
        [["--replay-seed", "1", "--replay-path", "0:1"], "needs exactly one --target"],
        [["--target", "x", "--replay-seed", "1", "--replay-path", "zz"], "not a fast-check path"],
        [["--replay", `${dir}/none`], "cannot read"],
        [["--artifacts", "/dev/null/sub/a"], "--artifacts: parent directory /dev/null/sub"],
      ] as const
    ) {
      const b = env();
      assertEquals(await fuzzMain([...args, "--runs", "5", "--workers", "0"], b.env), 2);
      assertStringIncludes(b.err(), want);
      assertEquals(b.err().trimEnd().split("\n").length, 1, b.err());
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("artifacts: the watchdog's hang message is a timeout, other crashes are crashes", () => {
  assert(isTimeout("no result after 3.2 s (budget 1.0 s): target.run hangs"));
  assert(!isTimeout("worker crashed: TypeError: x is undefined"));
});

Deno.test("watchdog: a hung unit names its input (seed + path) and the path replays to it", async () => {
  const { WorkerExecutor, runUnits } = await import("../../fuzz/campaign.ts");
  const fc = (await import("fast-check")).default;
  const w = new WorkerExecutor(new URL("./fuzz_examples_hang.ts", import.meta.url).href, 1, {
    hangSeconds: 2,
  });
  try {
    // warm the worker up (it loads the registry, then refuses the unknown target and stays), so
    // the hang budget below starts with the registry loaded even on a busy machine
    const [warm] = await runUnits([{ target: "nope", slice: 0, seed: 1, runs: 1 }], w);
    assertStringIncludes(warm.crash ?? "", 'no target "nope"');
    const [r] = await runUnits([{ target: "example-hang", slice: 0, seed: 1, seconds: 0.2 }], w);
    const m =
      /hung input: fast-check seed (-?\d+), path (\d+) \(replay: deno task fuzz --target example-hang --replay-seed \1 --replay-path \2\)/
        .exec(r.crash ?? "");
    if (m === null) throw new Error(`no hung input in: ${r.crash}`);
    assert(isTimeout(r.crash!));
    let seen: number | undefined;
    fc.check(
      fc.property(fc.integer({ min: 0, max: 10 }), (n) => {
        seen ??= n; // the path's input comes first, then fast-check goes on
      }),
      { seed: Number(m[1]), path: m[2], endOnFailure: true },
    );
    assertEquals(seen, 7, "the named path is the input that hangs");
  } finally {
    w.close();
  }
});
