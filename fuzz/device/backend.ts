/**
 * The back-end a device campaign fuzzes: launched fresh (testpmd, qemu-storage-daemon over a
 * known disk image) or already running (`socket:PATH`), restarted after a crash.
 * @module
 */

import {
  backendUnavailable,
  existingBackend,
  parseBackendSpec,
  startQsd,
  startTestpmd,
  type VhostBackend,
  VhostUserFrontend,
} from "../../src/vhost_user/mod.ts";
import type { DeviceType } from "./cases.ts";

/** Sector size of the disk image. */
export const SECTOR = 512;
/** Sectors of the known disk image (1 MiB). */
export const DISK_SECTORS = 2048;

/** Byte `i` of sector `s` of the known disk image. */
export function diskByte(s: number, i: number): number {
  return (s * 31 + i * 7 + 1) & 0xff;
}

/** One back-end under test, restartable. */
export class DeviceBackend {
  /** The spec as given (`testpmd`, `qsd`, `socket:PATH`). */
  readonly spec: string;
  /** Short name for tables and target names (`testpmd`, `qsd`, `socket`). */
  readonly name: "testpmd" | "qsd" | "socket";
  /** Device type. */
  readonly type: DeviceType;
  /** With ACCESS_PLATFORM (testpmd `iommu-support=1`). */
  readonly iommu: boolean;
  /** The disk image file (qsd), else `null`. */
  disk: string | null = null;
  /** Restarts so far. */
  restarts = 0;
  /** The back-end offers VIRTIO_F_RING_PACKED (bit 34): the campaign draws packed-ring cases. */
  packed = false;
  #be: VhostBackend | null = null;
  readonly #dir: string;

  private constructor(spec: string, type: DeviceType, iommu: boolean, dir: string) {
    this.spec = spec;
    const p = parseBackendSpec(spec);
    this.name = p.kind;
    this.type = type;
    this.iommu = iommu;
    this.#dir = dir;
  }

  /**
   * Starts (or connects to) the back-end. `socket:PATH` devices are typed by their offer
   * (protocol feature CONFIG: a block device, else a network device) unless `type` is given.
   * @throws the launcher's `BACKEND_START_FAILED`, or an Error naming a missing binary.
   */
  static async start(
    spec: string,
    o: { dir: string; iommu?: boolean; type?: DeviceType },
  ): Promise<DeviceBackend> {
    const p = parseBackendSpec(spec);
    let type: DeviceType = p.kind === "qsd" ? "blk" : "net";
    if (p.kind === "socket" && o.type === undefined) {
      const fe = VhostUserFrontend.connect(p.path, { replyTimeoutMs: 2000 });
      try {
        fe.getFeatures();
        const pf = fe.getProtocolFeatures();
        type = (pf >> 9n) & 1n ? "blk" : "net"; // CONFIG (bit 9): vhost-user-blk style
      } finally {
        fe.close();
      }
    } else if (o.type !== undefined) type = o.type;
    if (p.kind !== "socket") {
      const why = backendUnavailable(p.kind);
      if (why !== null) throw new Error(`back-end ${p.kind} cannot start: ${why}`);
    }
    const b = new DeviceBackend(spec, type, o.iommu ?? false, o.dir);
    await b.#launch();
    const fe = VhostUserFrontend.connect(b.be.socket, {
      replyTimeoutMs: 2000,
      connectRetryMs: 3000,
    });
    try {
      b.packed = ((fe.getFeatures() >> 34n) & 1n) === 1n;
    } finally {
      fe.close();
    }
    return b;
  }

  async #launch(): Promise<void> {
    const p = parseBackendSpec(this.spec);
    if (p.kind === "testpmd") {
      this.#be = await startTestpmd({ dir: this.#dir, queues: 1, iommu: this.iommu });
    } else if (p.kind === "qsd") {
      Deno.mkdirSync(this.#dir, { recursive: true });
      this.disk ??= `${this.#dir}/disk-${Deno.pid}.raw`;
      const img = new Uint8Array(DISK_SECTORS * SECTOR);
      for (let s = 0; s < DISK_SECTORS; s++) {
        for (let i = 0; i < SECTOR; i++) img[s * SECTOR + i] = diskByte(s, i);
      }
      Deno.writeFileSync(this.disk, img);
      this.#be = await startQsd({ dir: this.#dir, disk: this.disk });
    } else this.#be = existingBackend(p.path);
  }

  /** The running back-end. */
  get be(): VhostBackend {
    return this.#be!;
  }

  /** Kills and starts it again (a crashed back-end; the disk image is rewritten). */
  async restart(): Promise<void> {
    this.restarts++;
    const old = this.#be;
    this.#be = null;
    if (old !== null) {
      old.kill();
      await old.stop();
    }
    await this.#launch();
  }

  /** Stops it (launched back-ends only) and removes the disk image. */
  async stop(): Promise<void> {
    await this.#be?.stop();
    this.#be = null;
    if (this.disk !== null) {
      try {
        Deno.removeSync(this.disk);
      } catch { /* gone */ }
    }
  }
}
