/**
 * A fake QEMU speaking QMP on a unix socket, for testing the QMP client and the capture tool
 * without QEMU: a sparse guest memory, one virtio device with one split queue, optionally behind
 * an Intel vIOMMU (registers readable with HMP `xp`), and the commands the capture uses.
 * Behaviour knobs let a test make it misbehave (no answer, an error, a wrong id).
 */

import { stringifyExact } from "../../tools/qmp_client.ts";

/** Sparse guest memory: 4 KiB pages created on write. */
export class FakeMemory {
  readonly pages = new Map<number, Uint8Array>();
  #page(gpa: number): Uint8Array {
    const base = gpa - (gpa % 4096);
    let p = this.pages.get(base);
    if (!p) this.pages.set(base, p = new Uint8Array(4096));
    return p;
  }
  write(gpa: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.#page(gpa + i)[(gpa + i) % 4096] = bytes[i];
  }
  u16(gpa: number, v: number): void {
    this.write(gpa, new Uint8Array([v & 0xff, v >> 8]));
  }
  u64(gpa: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    this.write(gpa, b);
  }
  desc(table: number, i: number, addr: bigint, len: number, flags: number, next: number): void {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, addr, true);
    v.setUint32(8, len, true);
    v.setUint16(12, flags, true);
    v.setUint16(14, next, true);
    this.write(table, b);
    void i;
  }
  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      out[i] = this.pages.get((gpa + i) - ((gpa + i) % 4096))?.[(gpa + i) % 4096] ?? 0;
    }
    return out;
  }
}

/** Configuration of the fake. */
export interface FakeQemuConfig {
  memory: FakeMemory;
  ramSize: number;
  /** The queue's addresses as the driver programmed them (GPAs or IOVAs). */
  ring: { desc: bigint; avail: bigint; used: bigint; size: number; lastAvail: number };
  /** Guest features QEMU reports. */
  transports: string[];
  /** An intel-iommu with these register values (VER, GSTS, RTADDR). */
  vtd?: { ver: number; gsts: number; rtaddr: bigint };
  /** Misbehaviour: never answer this command. */
  silentOn?: string;
}

/** A running fake; `close()` stops it. */
export interface FakeQemu {
  path: string;
  commands: string[];
  running: boolean;
  close(): Promise<void>;
}

/**
 * The one socket path `deno task test` allows (`VIRTQ_FAKE_QMP_SOCKET`, set by the task to
 * `$PWD/.fake-qmp.sock` with `--allow-net` and `--allow-write` scoped to that path: unix socket
 * permissions in Deno 2.9 name an exact absolute path), or `undefined` when unset or unreadable
 * (then each fake gets a fresh directory under /tmp, which needs `--allow-net`, as test:qemu has).
 */
export function fixedFakeSocket(): string | undefined {
  try {
    return Deno.env.get("VIRTQ_FAKE_QMP_SOCKET") || undefined;
  } catch {
    return undefined;
  }
}

/** True when this process may serve the fake QMP socket (a scoped or a full net permission). */
export function canServeFake(): boolean {
  return fixedFakeSocket() !== undefined ||
    Deno.permissions.querySync({ name: "net" }).state === "granted";
}

/**
 * Starts the fake on {@link fixedFakeSocket} (one fake at a time: tests close it before the next)
 * or on a fresh socket under /tmp.
 */
export async function startFakeQemu(cfg: FakeQemuConfig): Promise<FakeQemu> {
  const fixed = fixedFakeSocket();
  const dir = fixed === undefined ? await Deno.makeTempDir({ prefix: "fake-qmp-" }) : undefined;
  const path = fixed ?? `${dir}/qmp.sock`;
  if (fixed !== undefined) {
    // A socket left by an interrupted run would make listen fail with AddrInUse.
    await Deno.remove(fixed).catch(() => {});
  }
  const listener = Deno.listen({ transport: "unix", path });
  const conns = new Set<Deno.Conn>();
  const state: FakeQemu = {
    path,
    commands: [],
    running: true,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving;
      if (dir !== undefined) await Deno.remove(dir, { recursive: true });
      else await Deno.remove(path).catch(() => {});
    },
  };
  const devPath = "/machine/peripheral/blk0/virtio-backend";
  const status = () => ({
    name: "virtio-blk",
    "queue-index": 0,
    inuse: 0,
    "vring-num": cfg.ring.size,
    "vring-num-default": 256,
    "vring-align": 4096,
    "vring-desc": cfg.ring.desc,
    "vring-avail": cfg.ring.avail,
    "vring-used": cfg.ring.used,
    "last-avail-idx": cfg.ring.lastAvail,
    "shadow-avail-idx": cfg.ring.lastAvail,
    "used-idx": cfg.ring.lastAvail,
    "signalled-used": cfg.ring.lastAvail,
    "signalled-used-valid": true,
  });
  const reg = (addr: number, width: number): bigint | null => {
    if (!cfg.vtd) return null;
    const off = addr - 0xfed90000;
    if (off === 0 && width === 4) return BigInt(cfg.vtd.ver);
    if (off === 0x1c && width === 4) return BigInt(cfg.vtd.gsts);
    if (off === 0x20 && width === 8) return cfg.vtd.rtaddr;
    return null;
  };
  const hmp = (line: string): string => {
    if (line === "info version") return "7.2.22Debian fake\r\n";
    if (line === "info status") return "VM status: paused\r\n";
    if (line === "info qtree") {
      return `bus: main-system-bus\r\n  type System\r\n${
        cfg.vtd ? '  dev: intel-iommu, id ""\r\n' : ""
      }`;
    }
    const m = /^xp \/(\d+)([whg])x (0x[0-9a-f]+)$/.exec(line) ??
      /^xp \/(\d+)x([whg]) (0x[0-9a-f]+)$/.exec(line);
    if (m) {
      const n = Number(m[1]);
      const width = m[2] === "g" ? 8 : m[2] === "w" ? 4 : 2;
      const addr = parseInt(m[3], 16);
      const vals: string[] = [];
      for (let i = 0; i < n; i++) {
        const a = addr + i * width;
        let v = reg(a, width);
        if (v === null) {
          const b = cfg.memory.read(a, width);
          v = 0n;
          for (let k = width - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]);
        }
        vals.push("0x" + v.toString(16).padStart(width * 2, "0"));
      }
      const perLine = width === 8 ? 2 : width === 4 ? 4 : 8;
      let out = "";
      for (let i = 0; i < vals.length; i += perLine) {
        out += `${(addr + i * width).toString(16).padStart(16, "0")}: ${
          vals.slice(i, i + perLine).join(" ")
        }\r\n`;
      }
      return out;
    }
    return "";
  };
  const answer = async (cmd: string, args: Record<string, unknown>): Promise<unknown> => {
    switch (cmd) {
      case "qmp_capabilities":
      case "cont":
        state.running = true;
        return {};
      case "stop":
        state.running = false;
        return {};
      case "query-status":
        return { status: state.running ? "running" : "paused", running: state.running };
      case "query-memory-size-summary":
        return { "base-memory": cfg.ramSize, "plugged-memory": 0 };
      case "x-query-virtio":
        return [{ name: "virtio-blk", path: devPath }];
      case "query-pci":
        return [{
          bus: 0,
          devices: [{ bus: 0, slot: 3, function: 0, qdev_id: "blk0", class_info: { class: 256 } }],
        }];
      case "x-query-virtio-status":
        return {
          name: "virtio-blk",
          "num-vqs": 1,
          "guest-features": { transports: cfg.transports, "dev-features": [] },
        };
      case "x-query-virtio-queue-status":
        return status();
      case "x-query-virtio-queue-element":
        return {
          name: "virtio-blk",
          index: 0,
          descs: [{ addr: 0x20000, len: 512, flags: [] }],
          avail: { idx: cfg.ring.lastAvail, flags: 0, ring: 0 },
          used: { idx: cfg.ring.lastAvail, flags: 0 },
        };
      case "pmemsave": {
        const val = Number(args.val), size = Number(args.size);
        await Deno.writeFile(String(args.filename), cfg.memory.read(val, size));
        return {};
      }
      case "human-monitor-command":
        return hmp(String(args["command-line"]));
      default:
        throw { class: "CommandNotFound", desc: `The command ${cmd} has not been found` };
    }
  };
  const serve = async (conn: Deno.Conn) => {
    const enc = new TextEncoder();
    const send = async (m: unknown) => {
      await conn.write(enc.encode(stringifyExact(m, 0) + "\r\n"));
    };
    await send({
      QMP: {
        version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "fake" },
        capabilities: [],
      },
    });
    let buf = "";
    const chunk = new Uint8Array(4096);
    const dec = new TextDecoder();
    try {
      while (true) {
        const n = await conn.read(chunk);
        if (n === null) break;
        buf += dec.decode(chunk.subarray(0, n));
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          state.commands.push(msg.execute);
          if (msg.execute === cfg.silentOn) continue;
          await send({ event: "SOMETHING", data: {} });
          try {
            await send({ return: await answer(msg.execute, msg.arguments ?? {}), id: msg.id });
          } catch (e) {
            await send({ error: e, id: msg.id });
          }
        }
      }
    } catch { /* closed */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const serving = (async () => {
    const all: Promise<void>[] = [];
    try {
      for await (const c of listener) {
        conns.add(c);
        all.push(serve(c));
      }
    } catch { /* closed */ }
    await Promise.all(all);
  })();
  return state;
}
