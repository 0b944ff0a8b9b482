// A fake vhost-user back-end in a worker thread: answers GET_FEATURES (VERSION_1 and
// VHOST_USER_F_PROTOCOL_FEATURES), then closes the connection when the next message
// (GET_PROTOCOL_FEATURES, whose reply the front-end awaits) arrives.
/// <reference lib="deno.worker" />

self.onmessage = async (e: MessageEvent<{ path: string }>) => {
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
  const reply = new DataView(new ArrayBuffer(20));
  reply.setUint32(0, 1, true); // GET_FEATURES
  reply.setUint32(4, 0x5, true); // version 1 | reply
  reply.setUint32(8, 8, true);
  reply.setBigUint64(12, (1n << 32n) | (1n << 30n), true);
  await c.write(new Uint8Array(reply.buffer));
  await c.read(new Uint8Array(64)); // GET_PROTOCOL_FEATURES: hang up on it
  c.close();
  l.close();
};
