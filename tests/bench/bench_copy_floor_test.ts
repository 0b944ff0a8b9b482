import { assert, assertEquals, assertThrows } from "@std/assert";
import { copyFloorVariants, measureCopyFloor } from "../../bench/copy_floor.ts";

Deno.test("copy-floor: every variant copies the payload into every chain's buffer", () => {
  for (const payload of [3, 64, 1500, 4097]) {
    const { variants, verify } = copyFloorVariants(payload);
    assert(variants.some((v) => v.name === "memmove"));
    assert(variants.some((v) => v.name === "bounce-cold" && v.copies === 3));
    verify();
  }
});

Deno.test("copy-floor: a variant that does not copy (planted) fails the check", () => {
  for (const name of ["memmove", "bounce-cold", "bounce-warm"]) {
    const { variants, verify } = copyFloorVariants(1500);
    const v = variants.find((x) => x.name === name)!;
    v.run = () => {};
    assertThrows(() => verify(), Error, `${name} 1500 B did not copy`);
  }
});

Deno.test("copy-floor: one line per variant and payload, positive times", () => {
  const lines = measureCopyFloor([64], 1, 1);
  assertEquals(lines.length, copyFloorVariants(64).variants.length);
  for (const l of lines) {
    assertEquals(l.payload, 64);
    assert(l.minNs > 0 && l.minNs <= l.medianNs, `${l.name}: ${l.minNs} ${l.medianNs}`);
  }
});

Deno.test("copy-floor: `only` measures just the named variants (the bench's floor line)", () => {
  const lines = measureCopyFloor([1500], 1, 1, undefined, ["memmove", "bounce-cold"]);
  assertEquals(lines.map((l) => l.name), ["memmove", "bounce-cold"]);
});

Deno.test("copy-floor CLI: a bad option exits 2 with one line naming the fix", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "bench/copy_floor.ts", "--payload", "0"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 2);
  const err = new TextDecoder().decode(out.stderr).trim().split("\n");
  assertEquals(err.length, 1);
  assert(err[0].includes("--payload") && err[0].includes("Fix:"), err[0]);
});

Deno.test("copy-floor CLI: --json writes the lines", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "bench/copy_floor.ts",
        "--payload",
        "64",
        "--rounds",
        "1",
        "--time",
        "1",
        "--json",
        file,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const j = JSON.parse(await Deno.readTextFile(file));
    assertEquals(j.schema, "copy-floor/1");
    assert(j.lines.some((l: { name: string }) => l.name === "set"));
  } finally {
    await Deno.remove(file);
  }
});
