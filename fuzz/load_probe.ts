/**
 * The load watchdog of `deno task fuzz`: before the main thread imports the target registry, a
 * Worker imports it under a time limit. A registry whose module load hangs (an engine call at
 * top level that never returns) or throws is reported in one line instead of hanging the runner
 * before its header.
 * @module
 */

/** Seconds a registry may take to load (the real one takes well under 5 s). */
export const LOAD_TIMEOUT_SECONDS = 120;

/** Outcome of {@link probeLoad}. */
export type LoadProbe = { ok: true; targets: number } | { ok: false; why: string };

/** Imports `registry` in a Worker; resolves within `timeoutSeconds` (the worker is killed). */
export function probeLoad(
  registry: string,
  timeoutSeconds = LOAD_TIMEOUT_SECONDS,
): Promise<LoadProbe> {
  return new Promise((resolve) => {
    const w = new Worker(new URL("./load_probe_worker.ts", import.meta.url).href, {
      type: "module",
    });
    const done = (r: LoadProbe) => {
      clearTimeout(timer);
      w.terminate();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        done({
          ok: false,
          why: `did not finish loading within ${timeoutSeconds} s (a top-level engine call ` +
            "hangs, e.g. while building real-ring seeds)",
        }),
      timeoutSeconds * 1000,
    );
    w.onmessage = (ev) => done(ev.data as LoadProbe);
    w.onerror = (ev) => {
      ev.preventDefault();
      done({ ok: false, why: `threw while loading: ${ev.message}` });
    };
    w.postMessage({ registry });
  });
}
