/**
 * Check sites, not codes: which call sites of the shared descriptor rules (`src/virtio/rules.ts`)
 * a campaign saw raise their violation. "Every code reached" counts codes; one code is raised from
 * several sites (split and packed, a descriptor of the ring and an entry of an indirect table), so
 * a campaign can reach a code from one site and never exercise the other.
 *
 * The site list is derived from the code, never kept by hand: the rule names are the functions
 * `rules.ts` exports whose name ends in `Rule`, and a site is every line of a `.ts` file under the
 * scanned folders (`rules.ts` itself excepted) that calls one. Whether a site raised its violation
 * comes from V8 block coverage (`deno coverage --lcov`), read at the line where the violation
 * starts (the *raise line*): the first statement of the then-branch of the `if` on the rule's
 * verdict. For `if (\n  rule(...) !== null\n) {\n  this.#raise(...);` that is the line after the
 * `) {`, wholly inside the then-block, so its line count (`DA`) is the times the violation ran;
 * for `) this.#raise(...)` or a one-line `if`, the then-branch shares the line with the
 * condition: deno zeroes a line that a never-run block overlaps, so the count is 0 exactly when
 * the violation never ran (and otherwise may count the line's other code: a lower bound on
 * nothing, a yes/no). A site written `if (rule(...) === null) return ...;` raises on the next line.
 *
 * Branch records (`BRDA`) are not used: V8 folds a block whose count equals its parent's into the
 * parent, so a violation taken on EVERY entry (the identity fast paths' segment limit, entered only
 * once the inline test saw the chain at the limit) leaves no then-block range behind, and the
 * first record after the call is the zero-count continuation (measured: such sites read 0 while
 * their raise line ran 2047 times).
 *
 * @module
 */

/** One call site of a rule. */
export interface CheckSite {
  /** The rule function, e.g. `nextIndexRule`. */
  rule: string;
  /** Source file, relative to the repository root. */
  file: string;
  /** 1-based line of the call. */
  line: number;
  /** The enclosing method or function, e.g. `#walkIndirect`. */
  method: string;
  /**
   * Times the violation branch ran (`undefined` before {@link countSiteHits}): exact when the
   * then-branch has lines of its own, else only zero or not (see the module text).
   */
  hits?: number;
  /** The 1-based line where the violation starts ({@link raiseLine}), once counted. */
  raiseLine?: number;
  /**
   * `hits` is the count of the violation itself (its then-branch has lines of its own); false:
   * `hits` is only zero or not (see the module text).
   */
  exact?: boolean;
}

/** The rule names `rules.ts` exports: every exported function whose name ends in `Rule`. */
export function ruleNames(rulesSource: string): string[] {
  return [...rulesSource.matchAll(/^export function (\w+Rule)\s*\(/gm)].map((m) => m[1]);
}

const METHOD =
  /^\s{2}(?:static\s+|async\s+|get\s+|set\s+|private\s+|protected\s+|public\s+)*(#?[A-Za-z_$][\w$]*)\s*\(/;
const FUNCTION = /^(?:export\s+)?function\s+([A-Za-z_$][\w$]*)/;

/**
 * Every call of a rule in `sources` (relative path -> text), comment lines skipped, with its
 * enclosing method (nearest class method at two-space indent, or top-level function, above it).
 * @param skip files to leave out (the rules' own file).
 */
export function findCheckSites(
  sources: ReadonlyMap<string, string>,
  rules: readonly string[],
  skip: readonly string[] = [],
): CheckSite[] {
  const call = new RegExp(`\\b(${rules.join("|")})\\s*\\(`);
  const out: CheckSite[] = [];
  for (const [file, text] of [...sources].sort(([a], [b]) => a.localeCompare(b))) {
    if (skip.includes(file) || rules.length === 0) continue;
    const lines = text.split("\n");
    let method = "(top level)";
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      const m = METHOD.exec(l) ?? FUNCTION.exec(l);
      if (m !== null && !/^\s*(if|for|while|switch|return|catch)\b/.test(l)) method = m[1];
      const t = l.trim();
      if (t.startsWith("*") || t.startsWith("//") || t.startsWith("/*")) continue;
      if (/^\s*import\b/.test(l) || /^\s*[\w,\s]*\}\s*from\b/.test(l)) continue;
      const c = call.exec(l);
      if (c !== null) out.push({ rule: c[1], file, line: i + 1, method });
    }
  }
  return out;
}

/** Per file: branch records (`BRDA` line -> taken counts by branch) and line counts (`DA`). */
export interface LcovDetail {
  branches: Map<number, number[]>;
  lines: Map<number, number>;
}

/** Parses the `BRDA` and `DA` records of lcov text, by file path relative to `root`. */
export function parseLcovDetail(text: string, root: string): Map<string, LcovDetail> {
  const out = new Map<string, LcovDetail>();
  let cur: LcovDetail | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("SF:")) {
      const f = line.slice(3);
      const rel = f.startsWith(root) ? f.slice(root.length).replace(/^\/+/, "") : f;
      cur = { branches: new Map(), lines: new Map() };
      out.set(rel, cur);
    } else if (cur !== undefined && line.startsWith("BRDA:")) {
      const [ln, , branch, taken] = line.slice(5).split(",");
      const b = cur.branches.get(Number(ln)) ?? [];
      b[Number(branch)] = taken === "-" ? 0 : Number(taken);
      cur.branches.set(Number(ln), b);
    } else if (cur !== undefined && line.startsWith("DA:")) {
      const [ln, n] = line.slice(3).split(",");
      cur.lines.set(Number(ln), Number(n));
    }
  }
  return out;
}

/** How far below the call the verdict's `if` may start (a multi-line call, then its `if`). */
const WINDOW = 12;

/**
 * The 1-based raise line of the site whose rule call is on 1-based line `line` of `lines`: the
 * line where the then-branch of the `if` on the rule's verdict starts (see the module text), or
 * undefined when no such `if` is found within {@link WINDOW} lines.
 */
export function raiseLine(lines: readonly string[], line: number): number | undefined {
  return findRaise(lines, line)?.line;
}

/** {@link raiseLine}, and whether the then-branch has lines of its own (`) {`). */
function findRaise(
  lines: readonly string[],
  line: number,
): { line: number; ownLine: boolean } | undefined {
  // The `if` holding the call: on the call line, on the line above (`if (` alone, the condition
  // below it), or, for `const v = rule(...)`, the first `if (` within the window below.
  let at = -1;
  const i0 = line - 1;
  if (/\bif\s*\(/.test(lines[i0] ?? "")) at = i0;
  else {
    // Inside a multi-line condition: up to its `if (` line (a statement end stops the search).
    for (let i = i0 - 1; i >= 0 && i >= i0 - WINDOW; i--) {
      if (/^\s*(\}\s*else\s+)?if\s*\($/.test(lines[i])) {
        at = i;
        break;
      }
      if (/[;{}]\s*$/.test(lines[i])) break;
    }
  }
  if (at < 0) {
    for (let i = i0 + 1; i <= i0 + WINDOW && i < lines.length; i++) {
      if (/^\s*if\s*\(/.test(lines[i])) {
        at = i;
        break;
      }
    }
  }
  if (at < 0) return undefined;
  // Balance the condition's parentheses from the `if (`; what follows the closing one decides.
  let depth = 0;
  let started = false;
  for (let i = at; i <= at + WINDOW && i < lines.length; i++) {
    const l = lines[i];
    let c = i === at ? l.search(/\bif\s*\(/) : 0;
    for (; c < l.length; c++) {
      const ch = l[c];
      if (ch === "(") {
        depth++;
        started = true;
      } else if (ch === ")" && --depth === 0 && started) {
        const rest = l.slice(c + 1).trim();
        return rest === "{" ? { line: i + 2, ownLine: true } : { line: i + 1, ownLine: false };
      }
    }
  }
  return undefined;
}

/**
 * Sets each site's `hits`: the line count of its raise line ({@link raiseLine}; 0 for a file no
 * target loaded or a site whose `if` cannot be found).
 * @param sources the same sources the sites were found in.
 */
export function countSiteHits(
  sites: CheckSite[],
  detail: ReadonlyMap<string, LcovDetail>,
  sources: ReadonlyMap<string, string>,
): CheckSite[] {
  for (const s of sites) {
    const d = detail.get(s.file);
    s.hits = 0;
    if (d === undefined) continue;
    const lines = sources.get(s.file)?.split("\n") ?? [];
    const text = lines[s.line - 1] ?? "";
    if (/===\s*(null|RULE_OK)\)\s*return\b/.test(text)) {
      s.hits = d.lines.get(s.line + 1) ?? 0;
      s.raiseLine = s.line + 1;
      s.exact = true;
      continue;
    }
    const r = findRaise(lines, s.line);
    s.raiseLine = r?.line;
    s.hits = r === undefined ? 0 : d.lines.get(r.line) ?? 0;
    s.exact = r?.ownLine ?? false;
  }
  return sites;
}

/** The verdict on the sites of {@link checkSiteSummary}. */
export interface CheckSiteSummary {
  /** Every site with its hits. */
  sites: CheckSite[];
  /** Rules called from more than one site. */
  multiSiteRules: string[];
  /** Sites of those rules whose violation never ran. */
  unreached: CheckSite[];
  /** Printable lines: a table of the multi-site rules and the one-line verdict. */
  text: string;
}

/** Names a site for people: `nextIndexRule @ src/virtio/split/walk.ts:240 (#walkIndirect)`. */
export function siteName(s: CheckSite): string {
  return `${s.rule} @ ${s.file}:${s.line} (${s.method})`;
}

/**
 * The check-site verdict: every rule that raises its code from more than one site must have
 * raised it from each of them.
 */
export function checkSiteSummary(sites: CheckSite[]): CheckSiteSummary {
  const byRule = new Map<string, CheckSite[]>();
  for (const s of sites) byRule.set(s.rule, [...(byRule.get(s.rule) ?? []), s]);
  const multiSiteRules = [...byRule].filter(([, v]) => v.length > 1).map(([k]) => k).sort();
  const multi = sites.filter((s) => multiSiteRules.includes(s.rule));
  const unreached = multi.filter((s) => (s.hits ?? 0) === 0);
  // A count that only says "ran" (then-branch on the condition's line) is shown as "yes".
  const shown = (s: CheckSite) =>
    (s.hits ?? 0) === 0 ? "0" : s.exact === false ? "yes" : String(s.hits);
  const rows = multi.map((s) => `  ${shown(s).padStart(9)}  ${siteName(s)}`);
  const verdict = unreached.length === 0
    ? `Check sites: all ${multi.length} sites of the ${multiSiteRules.length} rules raised from ` +
      `more than one site were reached (${sites.length} rule call sites in all).`
    : `Check sites: ${unreached.length} of ${multi.length} sites of rules raised from more than ` +
      `one site NOT reached:\n  ${unreached.map(siteName).join("\n  ")}`;
  return {
    sites,
    multiSiteRules,
    unreached,
    text: `violations  rule call site (yes: raised, count shared with its condition's line)\n${
      rows.join("\n")
    }\n\n${verdict}`,
  };
}
