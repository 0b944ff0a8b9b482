/** Check sites (fuzz/check_sites.ts): the site list comes from the code, hits from lcov. */
import { assert, assertEquals } from "@std/assert";
import {
  checkSiteSummary,
  countSiteHits,
  findCheckSites,
  parseLcovDetail,
  ruleNames,
} from "../../fuzz/check_sites.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const FILES = ["src/virtio/rules.ts", "src/virtio/split/walk.ts", "src/virtio/packed/walk.ts"];
const SOURCES = new Map(FILES.map((f) => [f, Deno.readTextFileSync(`${ROOT}/${f}`)]));

Deno.test("check sites: every exported rule of rules.ts, found in both walks", () => {
  const rules = ruleNames(SOURCES.get("src/virtio/rules.ts")!);
  assert(rules.includes("nextIndexRule") && rules.includes("indirectDescriptorRule"));
  assert(!rules.includes("ruleDetail") && !rules.includes("u64Words"));
  const sites = findCheckSites(SOURCES, rules, ["src/virtio/rules.ts"]);
  // The split walk checks next in the ring (the walk's fast test, then badNext, which raises it)
  // and inside an indirect table.
  const next = sites.filter((s) => s.rule === "nextIndexRule").map((s) => s.method);
  assertEquals(next, ["walk", "badNext", "#walkIndirect"]);
  // Framing is checked in five places: split and packed, ring and table (the split ring twice:
  // the walk's fast test, then the raising helper).
  assertEquals(
    sites.filter((s) => s.rule === "framingRule").map((s) => s.file.split("/")[2]),
    ["packed", "packed", "split", "split", "split"],
  );
  assert(sites.every((s) => !s.file.endsWith("rules.ts")));
});

Deno.test("check sites: hits from the first branch record at or after the call", () => {
  const src = new Map([[
    "src/x.ts",
    [
      "class W {",
      "  walk(n: number) {",
      "    if (aRule(n) !== null) this.#fail();", // 3: inline then-block
      "    const v = aRule(",
      "      n,",
      "    );",
      "    if (v !== null) this.#fail();", // 7: the verdict's if
      "  }",
      "  #other(n: number) {",
      "    if (aRule(n) === null) return false;", // 10: raises on line 11
      "    this.#fail();",
      "  }",
      "}",
    ].join("\n"),
  ]]);
  const sites = findCheckSites(src, ["aRule"]);
  assertEquals(sites.map((s) => [s.line, s.method]), [[3, "walk"], [4, "walk"], [10, "#other"]]);
  const lcov = [
    `SF:${ROOT}/src/x.ts`,
    "BRDA:3,0,0,5",
    "BRDA:3,0,1,7",
    "BRDA:7,0,0,0",
    "BRDA:7,0,1,12",
    "DA:11,2",
    "end_of_record",
  ].join("\n");
  countSiteHits(sites, parseLcovDetail(lcov, ROOT), src);
  assertEquals(sites.map((s) => s.hits), [5, 0, 2]);
  const summary = checkSiteSummary(sites);
  assertEquals(summary.multiSiteRules, ["aRule"]);
  assertEquals(summary.unreached.map((s) => s.line), [4]);
  assert(summary.text.includes("1 of 3 sites"), summary.text);
});
