/**
 * Worker of {@link probeLoad} (`fuzz/load_probe.ts`): imports a registry module and reports
 * whether it loaded, so a hang at module load (top-level await in a target or its seeds) is seen
 * by a watchdog on the main thread instead of hanging it.
 * @module
 */

/// <reference lib="deno.worker" />

self.onmessage = async (ev: MessageEvent<{ registry: string }>) => {
  try {
    const m = await import(ev.data.registry);
    self.postMessage({ ok: true, targets: Array.isArray(m.TARGETS) ? m.TARGETS.length : -1 });
  } catch (e) {
    self.postMessage({ ok: false, why: e instanceof Error ? e.message : String(e) });
  }
};
