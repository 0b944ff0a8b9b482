// A reply wait interrupted by signals (poll() fails with EINTR: a profiler's SIGPROF does this
// every millisecond) keeps waiting until its deadline: it must not end as TIMEOUT early.

import { assert, assertEquals } from "@std/assert";
import { UnixSocket } from "../../src/vhost_user/mod.ts";
import { CAN_RUN, WORK_DIR } from "./_rig.ts";

Deno.test({
  name: "UnixSocket.recvExact: signals during the poll (EINTR) do not end the wait as TIMEOUT",
  ignore: !CAN_RUN,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    Deno.mkdirSync(WORK_DIR, { recursive: true });
    const path = `${WORK_DIR}/eintr-${crypto.randomUUID().slice(0, 8)}.sock`;
    let caught = 0;
    const onSignal = () => caught++;
    Deno.addSignalListener("SIGUSR1", onSignal); // a handler, so SIGUSR1 interrupts, not kills
    const w = new Worker(new URL("./_late_answer_worker.ts", import.meta.url), { type: "module" });
    const messages: unknown[] = [];
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    w.onmessage = (e) => (e.data === "listening" ? ready() : messages.push(e.data));
    // this thread's id (under `deno test` it is not the process's main thread)
    const lib = Deno.dlopen("libc.so.6", { gettid: { parameters: [], result: "i32" } });
    const tid = lib.symbols.gettid();
    lib.close();
    w.postMessage({ path, pid: Deno.pid, tid, signalMs: 300 });
    await listening;
    const s = UnixSocket.connect(path, 2000);
    try {
      s.buf.view.setUint32(0, 1, true); // GET_FEATURES
      s.buf.view.setUint32(4, 1, true);
      s.buf.view.setUint32(8, 0, true);
      s.send(12);
      const t0 = performance.now();
      s.recvExact(20, 0, Date.now() + 5000, "GET_FEATURES"); // blocks in poll() meanwhile
      const waited = performance.now() - t0;
      assertEquals(s.buf.view.getUint32(0, true), 1);
      assertEquals(s.buf.view.getBigUint64(12, true), 1n << 32n);
      assert(waited >= 250, `the reply came after the signals (${waited.toFixed(0)} ms)`);
      // the worker's report and our handler's count arrive once the event loop runs again
      for (let i = 0; i < 100 && (messages.length === 0 || caught === 0); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const sent = (messages[0] as { sent: number }).sent;
      assert(sent >= 10, `signals sent while blocked: ${sent}`);
      assert(caught >= 1, "the signals reached this process's handler");
    } finally {
      s.close();
      w.terminate();
      Deno.removeSignalListener("SIGUSR1", onSignal);
      try {
        Deno.removeSync(path);
      } catch { /* gone */ }
    }
  },
});
