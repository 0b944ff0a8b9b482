/**
 * `deno task capture --qmp SOCKET --out DIR [--name NAME] [--resume] ...`
 *
 * Captures the virtqueues of a running QEMU (7.2 or newer) through its QMP socket as a
 * `virtio-ring-fixture-v1` fixture that `deno task inspect` reads (see tools/capture_core.ts).
 * Exit status: 0 written, 1 QEMU refused or failed mid-way, 2 bad input (one line: what and fix).
 *
 * @module
 */

import { capture, CaptureError, type CaptureOptions } from "./capture_core.ts";

const HELP = `Usage: deno task capture --qmp SOCKET --out DIR [options]

Stop a running QEMU guest, ask QEMU about every virtio device and queue (x-query-virtio*), read
the guest pages holding the rings, indirect tables and buffers (through the guest's VT-d tables
when an Intel vIOMMU translates them) and write a virtio-ring-fixture-v1 capture:
DIR/NAME.index.json, NAME.pages.bin.gz, NAME.qmp-virtio.json, NAME.hmp-info-virtio.txt.
Then: deno task inspect DIR/NAME.index.json

QEMU must run on this machine with a QMP socket, e.g.
  qemu-system-x86_64 ... -qmp unix:/tmp/qmp.sock,server=on,wait=off
and devices with an id (-device virtio-blk-pci,drive=d0,id=blk0) so their PCI address is known.

Options:
  --qmp SOCKET        QEMU's QMP unix socket (required)
  --out DIR           output directory, created if needed (required)
  --name NAME         file name stem (default: capture)
  --resume            resume the guest afterwards (default: leave it stopped)
  --timeout MS        timeout of each QMP command in ms (default 10000)
  --elements N        element queries per queue before last-avail-idx (default 4)
  --max-buffer-pages N  pages kept per buffer at most (default 16)
  --dmar-base ADDR    Intel vIOMMU register base (default 0xfed90000, QEMU's q35)
  --help              this text

Exit status: 0 written, 1 QEMU failed or refused a command, 2 bad input.
`;

function bad(message: string): never {
  throw new CaptureError(message, true);
}

/**
 * Parses the command line.
 * @returns the options, or `null` for `--help`.
 * @throws CaptureError (bad input) naming the option and the fix.
 */
export function parseCaptureArgs(
  argv: string[],
  progress: (line: string) => void = (l) => console.error(l),
): CaptureOptions | null {
  const o: Partial<CaptureOptions> = {
    name: "capture",
    resume: false,
    timeoutMs: 10000,
    elementsBack: 4,
    maxPagesPerBuffer: 16,
    dmarBase: 0xfed90000n,
    progress,
  };
  const value = (i: number, flag: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith("--")) bad(`${flag}: needs a value. Fix: see --help`);
    return v;
  };
  const count = (i: number, flag: string, min: number, max: number): number => {
    const v = value(i, flag);
    const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= max)) bad(`${flag}: "${v}" is not a number ${min}..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i];
    switch (t) {
      case "--help":
      case "-h":
        return null;
      case "--qmp":
        o.qmp = value(++i, t);
        break;
      case "--out":
        o.out = value(++i, t);
        break;
      case "--name": {
        const v = value(++i, t);
        if (!/^[A-Za-z0-9._-]+$/.test(v)) {
          bad(`--name: "${v}" is not a file name stem. Fix: letters, digits, . _ - only`);
        }
        o.name = v;
        break;
      }
      case "--resume":
        o.resume = true;
        break;
      case "--timeout":
        o.timeoutMs = count(++i, t, 100, 600000);
        break;
      case "--elements":
        o.elementsBack = count(++i, t, 0, 64);
        break;
      case "--max-buffer-pages":
        o.maxPagesPerBuffer = count(++i, t, 0, 4096);
        break;
      case "--dmar-base": {
        const v = value(++i, t);
        if (!/^0x[0-9a-fA-F]{1,16}$/.test(v)) {
          bad(`--dmar-base: "${v}" is not a hex address. Fix: e.g. --dmar-base 0xfed90000`);
        }
        o.dmarBase = BigInt(v);
        break;
      }
      default:
        bad(`${t}: unknown argument. Fix: see --help`);
    }
  }
  if (o.qmp === undefined) bad("--qmp: missing. Fix: --qmp /path/to/qmp.sock (see --help)");
  if (o.out === undefined) bad("--out: missing. Fix: --out DIR for the capture files");
  return o as CaptureOptions;
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  try {
    const opts = parseCaptureArgs(argv);
    if (opts === null) {
      console.log(HELP);
      return 0;
    }
    const s = await capture(opts);
    console.log(
      `wrote ${s.files.index} (${s.queues} queues of ${s.devices} devices, ${s.pages} pages` +
        `${
          s.iovaQueues
            ? `, ${s.iovaQueues} queues at IOVAs, RTADDR 0x${s.rtaddr!.toString(16)}`
            : ""
        }` +
        `) in ${s.timings.total} ms`,
    );
    console.log(`inspect it: deno task inspect ${s.files.index}`);
    return 0;
  } catch (e) {
    if (e instanceof CaptureError) {
      console.error(`capture: ${e.message.split("\n")[0]}`);
      return e.badInput ? 2 : 1;
    }
    console.error(`capture: ${(e as Error).message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
