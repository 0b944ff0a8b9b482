/**
 * `deno task probe SOCKET`: prints what a vhost-user back-end offers (virtio features and
 * protocol features by name, queue count, device config) without setting anything up beyond
 * GET_* messages and SET_PROTOCOL_FEATURES. Exits 2 with one line when nothing listens.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import {
  BLK_FEATURE_NAMES,
  featureBitNames,
  isVhostUserError,
  NET_FEATURE_NAMES,
  protocolBit,
  protocolFeatureNames,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VhostUserFrontend,
} from "../src/vhost_user/mod.ts";

const USAGE = `usage: deno task probe [--json] [--timeout MS] SOCKET
Connects to the vhost-user back-end listening on SOCKET (a unix socket path, or socket:PATH)
and prints its virtio features and protocol features by name, its queue count (protocol MQ),
its max memory slots (CONFIGURE_MEM_SLOTS) and the first bytes of its device config (CONFIG).
Exit 0 on success, 2 when nothing answers there.`;

function fail(msg: string): never {
  console.error(`probe: ${msg}`);
  Deno.exit(2);
}

const args = parseArgs(Deno.args, {
  boolean: ["help", "json"],
  string: ["timeout"],
  default: { timeout: "2000" },
});
if (args.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const target = String(args._[0] ?? "");
if (!target) fail("missing SOCKET argument (see --help)");
const path = target.startsWith("socket:") ? target.slice(7) : target;
const timeout = Number(args.timeout);
if (!Number.isFinite(timeout) || timeout <= 0) fail(`--timeout ${args.timeout}: a positive ms`);

let fe: VhostUserFrontend;
try {
  fe = VhostUserFrontend.connect(path, { replyTimeoutMs: timeout });
} catch (e) {
  if (isVhostUserError(e, "CONNECT_FAILED") || isVhostUserError(e, "BAD_ARGUMENT")) {
    fail(`nothing listens on ${path}: ${(e as Error).message.replace(/^[A-Z_]+: /, "")}`);
  }
  throw e;
}

try {
  const features = fe.getFeatures();
  const out: Record<string, unknown> = {
    socket: path,
    features: `0x${features.toString(16)}`,
    featureNames: featureBitNames(features, {}),
  };
  const deviceNames = { net: featureBitNames(features, NET_FEATURE_NAMES), blk: [] as string[] };
  deviceNames.blk = featureBitNames(features, BLK_FEATURE_NAMES);
  if ((features >> BigInt(VHOST_USER_F_PROTOCOL_FEATURES)) & 1n) {
    const pf = fe.getProtocolFeatures();
    out.protocolFeatures = `0x${pf.toString(16)}`;
    out.protocolFeatureNames = protocolFeatureNames(pf);
    // Only what GET_* messages need; REPLY_ACK is left out so no message expects an ack.
    fe.setProtocolFeatures(pf & ~protocolBit("REPLY_ACK"));
    if (pf & protocolBit("MQ")) out.queues = Number(fe.getQueueNum());
    if (pf & protocolBit("CONFIGURE_MEM_SLOTS")) out.maxMemSlots = Number(fe.getMaxMemSlots());
    if (pf & protocolBit("CONFIG")) {
      try {
        const c = fe.getConfig(0, 60);
        out.config = Array.from(c.data, (b) => b.toString(16).padStart(2, "0")).join("");
        const v = new DataView(c.data.buffer);
        out.configAsBlk = { capacitySectors: v.getBigUint64(0, true).toString() };
      } catch (e) {
        if (!isVhostUserError(e)) throw e;
        out.config = `unavailable (${(e as Error).message})`;
      }
    }
  }
  if (args.json) {
    console.log(JSON.stringify(out, null, 2));
  } else {
    console.log(`back-end at ${path}`);
    console.log(`  features ${out.features}: ${(out.featureNames as string[]).join(" ")}`);
    console.log(`    as virtio-net: ${deviceNames.net.join(" ")}`);
    console.log(`    as virtio-blk: ${deviceNames.blk.join(" ")}`);
    if (out.protocolFeatures) {
      console.log(
        `  protocol features ${out.protocolFeatures}: ${
          (out.protocolFeatureNames as string[]).join(" ")
        }`,
      );
    } else console.log(`  protocol features: none (VHOST_USER_F_PROTOCOL_FEATURES not offered)`);
    if (out.queues !== undefined) console.log(`  queues: ${out.queues}`);
    if (out.maxMemSlots !== undefined) console.log(`  max memory slots: ${out.maxMemSlots}`);
    if (out.config !== undefined) {
      console.log(`  device config (60 bytes): ${out.config}`);
      if (out.configAsBlk) {
        console.log(
          `    as virtio-blk: capacity ${
            (out.configAsBlk as { capacitySectors: string }).capacitySectors
          } sectors of 512 bytes`,
        );
      }
    }
  }
} catch (e) {
  if (isVhostUserError(e)) fail(`${path}: ${(e as Error).message}`);
  throw e;
} finally {
  fe.close();
}
