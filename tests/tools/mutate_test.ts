import { assert, assertEquals } from "@std/assert";

async function cases() {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      new URL("./mutate_cases.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert(out.success);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("mutate: operators over the AST, never in types, imports, messages or ignored lines", async () => {
  const c = await cases();
  assertEquals(c.ops, [
    "4:if-false:a < b && !x->false",
    "4:if-true:a < b && !x->true",
    "4:logical:&&->||",
    "4:relational:<-><=",
    "4:negation:!x->x",
    '4:no-throw:throw new RangeError("bad " + a);->{}',
  ]);
  assert(c.applied.includes("if (a <= b && !x)"));
  assert(c.diff.includes("-  if (a < b && !x)") && c.diff.includes("+  if (a <= b && !x)"), c.diff);
  assertEquals(c.sampleA, c.sampleB);
  assertEquals(new Set(c.sampleA).size, 3);
  assertEquals(c.all, c.count);
  assertEquals(c.sampleD.length, 4);
  assertEquals(c.sampleD.filter((id: string) => c.sampleC.includes(id)).length, 3);
  assert(!c.sampleD.includes(c.sampleC[1]));
  // `a & 0xffff` inside this.#fail's message is left alone; `a + 1` in a plain template is not
  assertEquals(c.template, [
    "3:no-throw:throw new Error(code + detail);->{}",
    "6:if-false:a > 1->false",
    "6:if-true:a > 1->true",
    "6:relational:>->>=",
    "6:literal:1->2",
    "7:arithmetic:+->-",
    "7:literal:1->2",
  ]);
});

Deno.test("mutate: the files left unmutated are the ones coverage leaves out of its totals", async () => {
  // read in the subprocess: tools/mutate.ts loads ts-morph, which reads the environment
  const c = await cases();
  assert(c.notMutated.length > 0);
  assertEquals(c.notMutated, c.notEngine);
});
