/**
 * Scaling curves as a hand-written SVG (no dependency): throughput vs queue size, vs payload, vs
 * chain length, and per DMA mode, from a results file. Each panel has titled axes with ticks, a
 * grid, one line per series with markers, and a legend.
 *
 * @module
 */

import { BASE, type CaseParams } from "./cases.ts";
import type { CaseResult, Results } from "./results.ts";

/** One line of a panel. */
export interface Series {
  /** Legend label. */
  name: string;
  /** Points, sorted by x. */
  points: [number, number][];
  /**
   * Spread bar per point (same order as `points`): `[low, high]` of y from the case's
   * interquartile range and cross-round spread; drawn as an error bar.
   */
  spread?: [number, number][];
  /** Dashed line (the second result of an overlay). */
  dashed?: boolean;
  /** Colour index override (so both runs of an overlay share a colour per series). */
  color?: number;
}

/** One chart. */
export interface Panel {
  /** Title above the chart. */
  title: string;
  /** X axis label. */
  xLabel: string;
  /** Y axis label. */
  yLabel: string;
  /** Log scale on x (base 2 spacing). */
  xLog: boolean;
  /** Log scale on y (decades, ticks at 1-2-5). */
  yLog?: boolean;
  /** Lines. */
  series: Series[];
}

const COLORS = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#7f7f7f",
  "#bcbd22",
];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** A "nice" upper bound and tick step for `[0, max]`. */
export function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return { top: Math.ceil(max / step) * step, step };
}

function fmtTick(x: number): string {
  if (x >= 1024 && x % 1024 === 0) return `${x / 1024}K`;
  if (Number.isInteger(x)) return String(x);
  return Number(x.toPrecision(3)).toString();
}

/** Ticks of a log axis from `lo` to `hi` (powers of 10): 1, 2, 5 per decade, or 1 when many. */
export function logTicks(lo: number, hi: number): number[] {
  const decades = Math.round(Math.log10(hi / lo));
  const steps = decades > 3 ? [1] : [1, 2, 5];
  const out: number[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of steps) {
      const v = Number((d * m).toPrecision(6));
      if (v <= hi * 1.0001) out.push(v);
    }
  }
  return out;
}

/** Renders one panel at (`x0`, `y0`) of `w` x `h` pixels. */
export function renderPanel(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const left = x0 + 70, right = x0 + w - 190, top = y0 + 40, bottom = y0 + h - 55;
  const out: string[] = [];
  out.push(
    `<text x="${(left + right) / 2}" y="${y0 + 22}" text-anchor="middle" font-size="15" ` +
      `font-weight="bold">${esc(p.title)}</text>`,
  );
  const pts = p.series.flatMap((s) => s.points);
  const xs = [...new Set(pts.map(([x]) => x))].sort((a, b) => a - b);
  out.push(
    `<rect x="${left}" y="${top}" width="${right - left}" height="${
      bottom - top
    }" fill="#fff" stroke="#333"/>`,
  );
  if (pts.length === 0) {
    out.push(
      `<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" ` +
        `font-size="13" fill="#777">no data in this run</text>`,
    );
  } else {
    const fx = (x: number) => (p.xLog ? Math.log2(x) : x);
    const xmin = fx(xs[0]), xmax = fx(xs[xs.length - 1]);
    const span = xmax - xmin || 1;
    const pad = xs.length === 1 ? 0.5 : 0;
    const sx = (x: number) =>
      left + 20 + ((fx(x) - xmin + pad) / (span + 2 * pad)) * (right - left - 40);
    const ys = pts.map(([, y]) => y).filter((y) => y > 0);
    let sy: (y: number) => number;
    let ticks: number[];
    if (p.yLog && ys.length) {
      const lo = 10 ** Math.floor(Math.log10(Math.min(...ys)));
      const hi = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
      const span = Math.log10(hi / lo) || 1;
      sy = (y: number) => bottom - (Math.log10(Math.max(y, lo) / lo) / span) * (bottom - top);
      ticks = logTicks(lo, hi);
    } else {
      const { top: ymax, step } = niceScale(Math.max(...pts.map(([, y]) => y)));
      sy = (y: number) => bottom - (y / ymax) * (bottom - top);
      ticks = [];
      for (let v = 0; v <= ymax + step / 2; v += step) ticks.push(Number(v.toPrecision(6)));
    }
    for (const v of ticks) {
      const y = sy(v).toFixed(1);
      out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#ddd"/>`);
      out.push(
        `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" ` +
          `font-size="11">${fmtTick(v)}</text>`,
      );
    }
    for (const x of xs) {
      const px = sx(x).toFixed(1);
      out.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${bottom}" stroke="#eee"/>`);
      out.push(
        `<text x="${px}" y="${bottom + 16}" text-anchor="middle" font-size="11">${
          fmtTick(x)
        }</text>`,
      );
    }
    p.series.forEach((s, i) => {
      const c = COLORS[(s.color ?? i) % COLORS.length];
      const d = s.points.map(([x, y], k) =>
        `${k ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`
      )
        .join(" ");
      out.push(
        `<path class="series" d="${d}" fill="none" stroke="${c}" stroke-width="2"${
          s.dashed ? ` stroke-dasharray="6 4"` : ""
        }/>`,
      );
      s.points.forEach(([x, y], k) => {
        const px = sx(x);
        const sp = s.spread?.[k];
        if (sp !== undefined) {
          const [y1, y2] = [sy(sp[0]).toFixed(1), sy(sp[1]).toFixed(1)];
          const [a, b] = [(px - 4).toFixed(1), (px + 4).toFixed(1)];
          out.push(
            `<path class="spread" d="M${px.toFixed(1)},${y1} L${px.toFixed(1)},${y2} ` +
              `M${a},${y1} L${b},${y1} M${a},${y2} L${b},${y2}" stroke="${c}" stroke-width="1.2"/>`,
          );
        }
        out.push(
          `<circle cx="${px.toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${
            s.dashed ? "#fff" : c
          }" stroke="${c}"/>`,
        );
      });
    });
  }
  out.push(
    `<text class="x-label" x="${(left + right) / 2}" y="${bottom + 40}" text-anchor="middle" ` +
      `font-size="12">${esc(p.xLabel)}</text>`,
  );
  const ly = (top + bottom) / 2;
  out.push(
    `<text class="y-label" x="${x0 + 16}" y="${ly}" text-anchor="middle" font-size="12" ` +
      `transform="rotate(-90 ${x0 + 16} ${ly})">${esc(p.yLabel)}</text>`,
  );
  p.series.forEach((s, i) => {
    const c = COLORS[(s.color ?? i) % COLORS.length];
    const y = top + 8 + i * 18;
    out.push(
      `<g class="legend"><line x1="${right + 12}" y1="${y}" x2="${right + 32}" y2="${y}" ` +
        `stroke="${c}" stroke-width="2"${s.dashed ? ` stroke-dasharray="6 4"` : ""}/><circle cx="${
          right + 22
        }" cy="${y}" r="3.5" ` +
        `fill="${c}"/><text x="${right + 38}" y="${y}" dominant-baseline="middle" ` +
        `font-size="11">${esc(s.name)}</text></g>`,
    );
  });
  return out.join("\n");
}

/** Renders panels in a grid of `cols` columns, with a title and a footer line. */
export function renderSvg(
  title: string,
  footer: string,
  panels: readonly Panel[],
  cols = 2,
): string {
  const w = 620, h = 380;
  const rows = Math.ceil(panels.length / cols);
  const W = w * cols, H = h * rows + 70;
  const body = panels.map((p, i) =>
    renderPanel(p, (i % cols) * w, 40 + Math.floor(i / cols) * h, w, h)
  );
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fafafa"/>`,
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="18" font-weight="bold">${
      esc(title)
    }</text>`,
    ...body,
    `<text x="12" y="${H - 12}" font-size="11" fill="#555">${esc(footer)}</text>`,
    `</svg>`,
    "",
  ].join("\n");
}

type Key = keyof CaseParams;

/**
 * Series of results that differ from the base point only in `axis` (and in engine/DMA mode,
 * which name the series).
 */
export function axisSeries(
  results: readonly CaseResult[],
  axis: Key,
  y: (r: CaseResult) => number,
  fixed: Partial<CaseParams> = {},
): Series[] {
  const base: CaseParams = { ...BASE, ...fixed };
  const groups = new Map<string, [number, number, number, number][]>();
  for (const r of results) {
    const p = r.params;
    let ok = true;
    for (const k of Object.keys(base) as Key[]) {
      if (k === axis || k === "engine" || k === "dma") continue;
      if (p[k] !== base[k]) ok = false;
    }
    if (!ok || p.engine === "memcpy" && axis !== "payload") continue;
    const name = p.engine === "sol" || p.engine === "memcpy" ? p.engine : `${p.engine}/${p.dma}`;
    if (!groups.has(name)) groups.set(name, []);
    // y is a throughput (inverse time): the slow end of the spread is the larger of the third
    // quartile and the slowest round's median, the fast end the first quartile
    const v = y(r), st = r.stats;
    groups.get(name)!.push([
      p[axis] as number,
      v,
      v * st.p50 / Math.max(st.p75, st.p50max),
      v * st.p50 / st.p25,
    ]);
  }
  return [...groups].map(([name, points]) => {
    points.sort((a, b) => a[0] - b[0]);
    return {
      name: name === "sol" ? "speed-of-light" : name,
      points: points.map(([x, v]) => [x, v] as [number, number]),
      spread: points.map(([, , lo, hi]) => [lo, hi] as [number, number]),
    };
  });
}

/**
 * The series restricted to the x values every series has, so lines with more points (identity
 * measured at every payload) do not look like cliffs next to modes measured at a few.
 */
export function sharedX(series: readonly Series[]): Series[] {
  if (series.length < 2) return [...series];
  const common = series.map((s) => new Set(s.points.map(([x]) => x))).reduce((a, b) =>
    new Set([...a].filter((x) => b.has(x)))
  );
  if (common.size === 0) return [...series];
  return series.map((s) => {
    const keep = s.points.map(([x], i) => common.has(x) ? i : -1).filter((i) => i >= 0);
    return {
      ...s,
      points: keep.map((i) => s.points[i]),
      ...(s.spread ? { spread: keep.map((i) => s.spread![i]) } : {}),
    };
  });
}

/** The standard panels of a results file. */
export function standardPanels(res: Results): Panel[] {
  const r = res.results;
  const mchains = (x: CaseResult) => x.chainsPerSec / 1e6;
  const gbytes = (x: CaseResult) => x.bytesPerSec / 1e9;
  const identityOrSol = (s: Series) => s.name === "speed-of-light" || s.name.endsWith("/identity");
  return [
    {
      title: "Throughput vs queue size (batch 32, 64 B)",
      xLabel: "queue size (descriptors, log scale)",
      yLabel: "M chains/s",
      xLog: true,
      series: axisSeries(r, "size", mchains).filter(identityOrSol),
    },
    {
      title: "Throughput vs payload (q256, batch 32)",
      xLabel: "payload per chain (bytes, log scale)",
      yLabel: "GB/s",
      xLog: true,
      series: axisSeries(r, "payload", gbytes).filter((s) =>
        identityOrSol(s) || s.name === "memcpy"
      ),
    },
    ...(["split", "packed"] as const).map((layout) => ({
      title: `${layout}: throughput per DMA mode (q256, batch 32)`,
      xLabel: "payload per chain (bytes, log scale; payloads every mode measured)",
      yLabel: "M chains/s (log scale)",
      xLog: true,
      yLog: true,
      series: sharedX(
        axisSeries(r, "payload", mchains).filter((s) => s.name.startsWith(`${layout}/`))
          .map((s) => ({ ...s, name: s.name.slice(layout.length + 1) })),
      ),
    })),
    {
      title: "Throughput vs chain length (q1024, batch 32, 64 B)",
      xLabel: "descriptors per chain (log scale)",
      yLabel: "M chains/s",
      xLog: true,
      series: axisSeries(r, "chainLen", mchains, { size: 1024 }).filter(identityOrSol),
    },
  ];
}

/**
 * Before/after overlay: the panels of `a` (solid) and `b` (dashed, same colour per series), the
 * series named with each run's label.
 */
export function overlayPanels(
  a: Results,
  b: Results,
  labels: readonly [string, string],
): Panel[] {
  const pa = standardPanels(a), pb = standardPanels(b);
  return pa.map((p, i) => {
    const names = [...new Set([...p.series, ...pb[i].series].map((s) => s.name))];
    const color = (n: string) => names.indexOf(n);
    return {
      ...p,
      series: [
        ...p.series.map((s) => ({ ...s, name: `${s.name} [${labels[0]}]`, color: color(s.name) })),
        ...pb[i].series.map((s) => ({
          ...s,
          name: `${s.name} [${labels[1]}]`,
          color: color(s.name),
          dashed: true,
        })),
      ],
    };
  });
}

/** The overlay SVG of two results files (`deno task bench:plot A.json B.json`). */
export function plotOverlay(a: Results, b: Results, labels: readonly [string, string]): string {
  const foot = (r: Results) => `${r.createdAt} deno ${r.runtime.deno}`;
  return renderSvg(
    `virtq-lab ring round trips: ${labels[0]} (solid) vs ${labels[1]} (dashed)`,
    `${labels[0]}: ${foot(a)}; ${labels[1]}: ${foot(b)}; bars: IQR and cross-round spread`,
    overlayPanels(a, b, labels),
  );
}

/** The whole SVG for a results file. */
export function plotResults(res: Results): string {
  const footer = `${res.createdAt}  deno ${res.runtime.deno}, v8 ${res.runtime.v8}, ` +
    `${res.machine.os}/${res.machine.arch}, ${res.machine.cpus} cpus, ` +
    `${res.machine.cpuName ?? "cpu ?"}; rounds ${res.options.rounds}, min-of-N medians; ` +
    "bars: IQR and cross-round spread";
  return renderSvg("virtq-lab ring round trips: scaling", footer, standardPanels(res));
}
