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
