// A fake back-end in a worker thread that answers late while signals hit the main thread:
// it accepts one connection, reads one 12-byte header, then sends SIGUSR1 to thread `tid` (the
// test's thread, with tgkill) every 10 ms for `signalMs`, and only then writes a 20-byte
// reply. That thread blocks in poll() meanwhile, so every signal interrupts it with EINTR.
/// <reference lib="deno.worker" />

const SIGUSR1 = 10;

self.onmessage = async (
  e: MessageEvent<{ path: string; pid: number; tid: number; signalMs: number }>,
) => {
  const libc = Deno.dlopen("libc.so.6", {
    tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
  });
  const l = Deno.listen({ transport: "unix", path: e.data.path });
  self.postMessage("listening");
  const c = await l.accept();
  const hdr = new Uint8Array(12);
  let got = 0;
  while (got < 12) {
    const n = await c.read(hdr.subarray(got));
    if (n === null) break;
    got += n;
  }
  let sent = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < e.data.signalMs) {
    await new Promise((r) => setTimeout(r, 10));
    if (libc.symbols.tgkill(e.data.pid, e.data.tid, SIGUSR1) === 0) sent++;
  }
  const reply = new DataView(new ArrayBuffer(20));
  reply.setUint32(0, 1, true); // GET_FEATURES
  reply.setUint32(4, 0x5, true); // version 1 | reply
  reply.setUint32(8, 8, true);
  reply.setBigUint64(12, 1n << 32n, true);
  await c.write(new Uint8Array(reply.buffer));
  self.postMessage({ sent });
  await c.read(new Uint8Array(64)); // until the main thread closes
  c.close();
  l.close();
  libc.close();
};
