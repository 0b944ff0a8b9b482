/**
 * No command of the README or of a `--help` prints a stack trace for bad input: each gets bad
 * flags, missing or unwritable paths, negative numbers and wrong types, and must exit 2 with one
 * line on stderr naming the problem (no "    at " frames).
 */
import { assert, assertEquals } from "@std/assert";

const ROOT = new URL("../../", import.meta.url);
const TASKS: Record<string, { command: string } | string> =
  JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks;

/** The `deno run ...` argv of a task (its permissions and script). */
function taskArgv(task: string): string[] {
  const t = TASKS[task];
  const cmd = typeof t === "string" ? t : t.command;
  const argv = cmd.split(/\s+/);
  assertEquals(argv[0], "deno", `task ${task} is a deno command`);
  return argv.slice(1);
}

const BAD: Record<string, string[][]> = {
  "fuzz": [
    ["--bogus"],
    ["--runs", "-1"],
    ["--seconds", "abc"],
    ["--seed", "-5"],
    ["--workers", "1.5"],
    ["--shard", "0/2", "--seed", "1"],
    ["--target", "no-such-target", "--runs", "1"],
    ["--replay", "/no/such/file.json"],
    ["--json", "/dev/null/sub/r.json", "--runs", "1"],
    ["--junit", "/tmp", "--runs", "1"],
    ["--artifacts", "/dev/null/sub/a", "--runs", "1"],
  ],
  "fuzz:merge": [
    ["--bogus"],
    [],
    ["/no/such/report.json"],
    ["deno.json"],
    ["--json", "/dev/null/sub/m.json", "deno.json"],
  ],
  "fuzz:matrix": [
    ["--bogus"],
    ["--shards", "-2", "--seed", "1"],
    ["--shards", "2"],
    ["--shards", "two", "--seed", "1"],
  ],
  "fuzz:corpus": [
    [],
    ["bogus"],
    ["merge", "--bogus"],
    ["merge", "/tmp"],
    ["merge", "/tmp/out", "/no/such/corpus"],
    ["tmin", "/no/such/input.json"],
    ["tmin", "deno.json"],
    ["tmin", "deno.json", "--out", "/dev/null/sub/x.json"],
  ],
  "fuzz:topology-findings": [
    ["--bogus"],
    ["--runs", "-1"],
    ["--seed", "x"],
    ["--out", "/proc/no-such/dir"],
  ],
  "bench": [
    ["--bogus"],
    ["--rounds", "-1"],
    ["--time", "-5"],
    ["--threshold", "-10"],
    ["--rounds", "many"],
    ["--compare", "/no/such/baseline.json"],
    ["--filter", "("],
    ["--json", "/dev/null/sub/r.json"],
  ],
  "bench:plot": [
    ["--bogus"],
    ["/no/such/results.json"],
    ["deno.json"],
  ],
  "explain": [
    ["--bogus"],
    ["/no/such/topology.json"],
    ["no-such-preset"],
    ["deno.json"],
  ],
  "fuzz:coverage": [
    ["--bogus"],
    ["--seconds", "-1"],
  ],
  "check:imports": [
    ["--bogus"],
    ["stray-argument"],
  ],
  "schema": [
    ["--bogus"],
  ],
  "inspect": [
    ["--bogus"],
    ["/no/such/index.json"],
  ],
  "probe": [
    [],
    ["/no/such/vhost.sock"],
  ],
  "capture": [
    ["--bogus"],
    ["--qmp", "/no/such/qmp.sock", "--out", "/tmp"],
  ],
  "mutate": [
    ["--bogus"],
    ["--sample", "-1"],
    ["--seconds", "abc"],
  ],
  "bench:copy-floor": [
    ["--bogus"],
    ["--payload", "0"],
    ["--rounds", "-1"],
    ["--time", "abc"],
    ["--json", "/dev/null/sub/f.json", "--payload", "64", "--rounds", "1", "--time", "1"],
  ],
  "bench:profile": [
    ["--bogus"],
    [],
    ["no-such-case"],
  ],
  "bench:vhost-user": [
    ["--bogus"],
    ["--backend", "nope"],
    ["--frames", "-5"],
    ["--layout", "ring"],
    ["--isolate", "worker"],
  ],
};

for (const [task, cases] of Object.entries(BAD)) {
  Deno.test(`bad input: deno task ${task} exits 2 with one line and no stack trace`, async () => {
    const argv = taskArgv(task);
    for (const args of cases) {
      const r = await new Deno.Command(Deno.execPath(), {
        args: [...argv, ...args],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      const what = `deno task ${task} ${args.join(" ")}\nstderr:\n${err}`;
      assertEquals(r.code, 2, what);
      assert(!/^\s+at /m.test(err), `stack trace: ${what}`);
      // Deno's own "Download https://registry.npmjs.org/..." lines (a cold package cache, as on a
      // fresh machine) are Deno's, not the task's output
      const lines = err.split("\n").filter((l) => l.trim() !== "" && !/^Download https?:/.test(l));
      assertEquals(lines.length, 1, `not one line: ${what}`);
    }
  });
}

Deno.test("bad input: every CLI task of deno.json is fed bad input above", () => {
  const notClis = [
    "test",
    "check",
    "lint",
    "fmt",
    "doc:lint",
    "test:doc",
    "ci",
    "test:qemu",
    "test:vhost-user",
  ];
  const clis = Object.keys(TASKS).filter((t) => !notClis.includes(t)).sort();
  const fed = Object.keys(BAD).sort();
  const missing = clis.filter((t) => !fed.includes(t));
  assertEquals(missing, [], `add bad inputs for: ${missing.join(", ")}`);
});
