import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { type FuzzEnv, fuzzMain } from "../../fuzz/main.ts";
import { mergeMain } from "../../fuzz/merge.ts";
import { outputPathProblem } from "../../fuzz/output_paths.ts";
import { makeCopyTarget } from "./fuzz_examples.ts";

function env(): { env: FuzzEnv; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    env: {
      targets: [makeCopyTarget()],
      registryUrl: new URL("./fuzz_examples.ts", import.meta.url).href,
      out: (s) => void out.push(s),
      err: (s) => void err.push(s),
      isTty: false,
      cores: 1,
    },
    out,
    err,
  };
}

Deno.test("output paths: a missing directory, a directory or an unwritable file is refused before any run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-paths-" });
  try {
    assertEquals(outputPathProblem("--json", `${dir}/r.json`), null);
    assert(
      (() => {
        try {
          Deno.statSync(`${dir}/r.json`);
          return false;
        } catch {
          return true;
        }
      })(),
      "the probe removes the file it created",
    );
    const cases: [string[], string][] = [
      [["--json", "/dev/null/sub/r.json"], "--json: /dev/null/sub is not a usable directory"],
      [["--junit", dir], `--junit: ${dir} is a directory`],
      [["--json", `${dir}/ok.json`, "--junit", `${dir}/nope/r.xml`], "--junit: directory"],
    ];
    for (const [args, want] of cases) {
      const c = env();
      const code = await fuzzMain(["--workers", "0", "--runs", "5", "--seed", "1", ...args], c.env);
      assertEquals(code, 2, args.join(" "));
      assertEquals(c.out.join(""), "", "nothing ran: no header");
      const e = c.err.join("");
      assertStringIncludes(e, want);
      assertStringIncludes(e, "Fix:");
      assertEquals(e.trimEnd().split("\n").length, 1);
    }
    const m: string[] = [];
    assertEquals(
      mergeMain(["a.json", "--json", "/dev/null/sub/m.json"], () => {}, (s) => void m.push(s)),
      2,
    );
    assertStringIncludes(m.join(""), "fuzz:merge: --json: /dev/null/sub is not a usable directory");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
