/**
 * Mutants of the engine that `deno task mutate` found surviving the campaign, each now killed
 * by a draw or an oracle added for it: the mutant is written into a private copy of `src/` and
 * `fuzz/`, and a fixed-seed campaign (a run budget, so load cannot change it) of the target
 * that should notice it must fail (exit 1). The unmutated campaigns stay clean (tests/fuzz/fuzz_targets_smoke_test.ts and the
 * default campaign), so each case shows the new draw or oracle fires on that mutant only.
 */
import { assert, assertEquals } from "@std/assert";

interface Kill {
  /** Mutated file (repository-relative) and 1-based line of the mutant when it was found. */
  file: string;
  line: number;
  /** Exact text replaced on that line, and its replacement. */
  from: string;
  to: string;
  /** Target whose campaign must now fail. */
  target: string;
  /** What was added to kill it. */
  why: string;
}

/** Runs of the mutant's fixed-seed campaign (seed 1, one worker). */
const KILL_RUNS = 100_000;

const KILLS: Kill[] = [
  {
    file: "src/virtio/packed/device.ts",
    line: 500,
    from: "if (this.#broken !== null || !this.#ready) return false;",
    to: "if (false) return false;",
    target: "packed-hostile-driver",
    why:
      "set-notifications: a broken, then reset queue answers false and writes no event structure",
  },
  {
    file: "src/virtio/split/device.ts",
    line: 497,
    from: "if (!this.#ready || this.#broken !== null) return false;",
    to: "if (false) return false;",
    target: "split-hostile-driver",
    why: "set-notifications: a reset (not re-activated) or broken queue writes no used flags",
  },
  {
    file: "src/virtio/split/device.ts",
    line: 605,
    from: "& 0xffff) > size)",
    to: "& 0xffff) >= size)",
    target: "restore",
    why:
      "restore draws one-descriptor buffers, so the avail ring fills (avail idx Queue Size ahead)",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 214,
    from: "lo <= hiPfn",
    to: "lo < hiPfn",
    target: "dma-invariants",
    why: "iova part reserves one PFN inside a live range: nothing may be inserted",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 376,
    from: "if (i < 0) return false;",
    to: "if (i <= 0) return false;",
    target: "dma-invariants",
    why: "iova part draws freeFast of live ranges (including the lowest)",
  },
  {
    file: "src/dma/iommu.ts",
    line: 411,
    from: "pfn * 4096 + offset",
    to: "pfn * 4097 + offset",
    target: "dma-invariants",
    why: "an unmapped fault must name the probed bus address",
  },
  {
    file: "src/devices/virtio_iommu/mappings.ts",
    line: 83,
    from: "lo) >= 0) return i;",
    to: "lo) >= 1) return i;",
    target: "viommu-stack",
    why: "viommu-stack probes the last byte of a mapping's granule-rounded end (and the next)",
  },
  {
    file: "src/dma/iotlb.ts",
    line: 31,
    from: "L3 = 3 << 24",
    to: "L3 = 4 << 24",
    target: "dma-modes",
    why: "the IOTLB op looks up the entry it inserted last and invalidates large ranges beside it",
  },
  {
    file: "src/devices/virtio_iommu/driver_api.ts",
    line: 417,
    from: "bus >= this.#wIova &&",
    to: "bus >= this.#wIova ||",
    target: "viommu-stack",
    why: "viommu-stack draws a long-lived window: unmaps below it must still send UNMAP",
  },
  {
    file: "src/dma/page_table.ts",
    line: 317,
    from: "let l = level + 1;",
    to: "let l = level - 1;",
    target: "dma-modes",
    why: "the page-table op unmaps a page twice with unmapPage: no table freed twice",
  },
  {
    file: "src/dma/modes.ts",
    line: 260,
    from: "size: half || 4096",
    to: "size: half && 4096",
    target: "dma-chains",
    why: "dma-chains checks window-iommu maps lower-half buffers through the direct window",
  },
  {
    file: "src/dma/iommu_api.ts",
    line: 276,
    // #freeIova (the same text at #unmap, line 236, is further away)
    from: "a.dataB(i) | FLAG_PENDING",
    to: "a.dataB(i) & FLAG_PENDING",
    target: "dma-invariants",
    why: "iommu part step 4: a map failing in the page table must leave its IOVA not live",
  },
  {
    file: "src/devices/virtio_iommu/device.ts",
    line: 419,
    // reportFault (the same text in processRequestQueue, line 386, is further away)
    from: "if (!(e instanceof VirtqError)) throw e;",
    to: "if (true) throw e;",
    target: "viommu-stack",
    why: "viommu-stack draws a hostile eventq: a fault must stop reporting, not throw a VirtqError",
  },
  {
    file: "src/devices/virtio_iommu/queues.ts",
    line: 144,
    from: "if (reposted > 0) eq.driver.kick();",
    to: "if (false) eq.driver.kick();",
    target: "viommu-stack",
    why: "viommu-stack drains the eventq (1 or 2 event buffers): a fault after the drain must " +
      "be reported, the re-posted buffers published (lost-notification)",
  },
  {
    file: "src/devices/virtio_iommu/transport.ts",
    line: 239,
    from: "(n + 63) & ~63",
    to: "(n + 63) & ~64",
    target: "viommu-stack",
    why: "viommu-stack sends MAP batches: requests laid out back to back in the staging area",
  },
  {
    file: "src/virtio/packed/walk.ts",
    line: 469,
    // #addPiece (the same text in #translate's fast path, line 386, is further away)
    from: "chain.readableCount + chain.writableCount",
    to: "chain.readableCount - chain.writableCount",
    target: "packed-hostile-driver",
    why: "packed-hostile-driver's memory is three regions: lists cross them, so the general " +
      "path meets the segment limit with writable segments counted",
  },
  {
    file: "src/devices/virtio_iommu/probe.ts",
    line: 79,
    from: "(word & ~VIRTIO_IOMMU_PROBE_T_MASK) === 0) break;",
    to: "(word & ~VIRTIO_IOMMU_PROBE_T_MASK) !== 0) break;",
    target: "viommu-hostile-device",
    why: "probe-lie draws a NONE terminator over the first property: nothing after it is read",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 384,
    from: "if (rc.prev.size < IOVA_MAG_SIZE) {",
    to: "if (rc.prev.size <= IOVA_MAG_SIZE) {",
    target: "dma-invariants",
    why: "iova part step 5, a range-cache storm: more freeFast of one size class than two " +
      "magazines hold, then as many allocFast",
  },
  {
    file: "src/dma/assembly.ts",
    line: 317,
    from: "off >= 0 && off < v.len",
    to: "off >= 0 && off <= v.len",
    target: "dma-invariants",
    why: "viommu-bounce part: the byte one past a bounce mapping's end must not reverse",
  },
  {
    file: "src/dma/iotlb.ts",
    line: 420,
    from: "iova: number, am = 0)",
    to: "iova: number, am = 1)",
    target: "dma-modes",
    why: "IOTLB steps call invalidatePage without am (its default 0), half of them beside the " +
      "last 4 KiB insert, and check the neighbouring pages keep their entries",
  },
  {
    file: "src/devices/virtio_iommu/requests.ts",
    line: 135,
    from: "? probeSize + VIRTIO_IOMMU_REQ_TAIL_SIZE",
    to: "? probeSize - VIRTIO_IOMMU_REQ_TAIL_SIZE",
    target: "viommu-stack",
    why: "the driver sizes PROBE's writable part with viommuTailSize (no copy of the rule)",
  },
  {
    file: "src/virtio/split/walk.ts",
    line: 169,
    from: "chainLengthRule(count + 1, size)",
    to: "chainLengthRule(count - 1, size)",
    target: "split-hostile-driver",
    why: "a loop in a queue of 2 with maxSegments 2: two descriptors late, the segment limit " +
      "fires first, not the loop",
  },
  {
    file: "src/virtio/packed/device.ts",
    line: 566,
    from: "this.#lapDistance(a.headSlot) - this.#lapDistance(b.headSlot)",
    to: "this.#lapDistance(a.headSlot) + this.#lapDistance(b.headSlot)",
    target: "restore",
    why: "half the completions take the oldest chain, so a pool reused out of ring order (pop " +
      "A, B; complete A; pop C) is saved and restored often",
  },
  {
    file: "src/devices/virtio_iommu/device.ts",
    line: 562,
    from: "ep.domain !== null && ep.domain.endpoints.size === 1",
    to: "ep.domain === null && ep.domain.endpoints.size === 1",
    target: "viommu-requests",
    why: "the device gets a drawn domain limit of 1 to 3, so ATTACH reaches NOMEM with the " +
      "endpoint's own domain about to be freed",
  },
  {
    file: "src/devices/virtio_iommu/endpoint_space.ts",
    line: 252,
    from: "bus + length > GPA_LIMIT",
    to: "bus - length > GPA_LIMIT",
    target: "viommu-requests",
    why: "bypassing endpoints are probed with accesses ending at 2^52 and one byte past it",
  },
  {
    file: "src/dma/iommu.ts",
    line: 169,
    from: "!Number.isInteger(did) || did < 0",
    to: "!Number.isInteger(did) && did < 0",
    target: "dma-invariants",
    why: "the iommu part hands createDomain a negative, fractional or 17-bit domain ID",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 120,
    from: "throw new RangeError(`startPfn ${this.startPfn} must be a non-negative integer`);",
    to: "{}",
    target: "dma-invariants",
    why: "the iova part builds an allocator with a negative or fractional startPfn first",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 277,
    from: "const next = i + 1 < n ?",
    to: "const next = i - 1 < n ?",
    target: "dma-invariants",
    why: "top-down follows Linux's cached node across frees: freeing the highest range resets it",
  },
  {
    file: "src/virtio/packed/device.ts",
    line: 278,
    from: 'throw new VirtqError("RING_MISALIGNED", `${what} translates to unaligned GPA ${gpa}`);',
    to: "{}",
    target: "packed-hostile-driver",
    why: "activation draws an offset window that moves an aligned bus address to an unaligned GPA",
  },
  {
    file: "src/virtio/split/device.ts",
    line: 98,
    from: "if (offset % align !== 0) {",
    to: "if (false) {",
    target: "split-hostile-driver",
    why: "activation draws an offset window that moves an aligned bus address to an unaligned GPA",
  },
  {
    file: "src/virtio/packed/walk.ts",
    line: 107,
    from: "Object.getPrototypeOf(dma) === IdentityAddressSpace.prototype",
    to: "Object.getPrototypeOf(dma) !== IdentityAddressSpace.prototype",
    target: "packed-hostile-device",
    why: "a bus shift inside guest memory's GPAs: the region fast path would take bus for GPA",
  },
  {
    file: "src/virtio/split/walk.ts",
    line: 95,
    from: "Object.getPrototypeOf(dma) === IdentityAddressSpace.prototype",
    to: "Object.getPrototypeOf(dma) !== IdentityAddressSpace.prototype",
    target: "split-hostile-device",
    why: "a bus shift inside guest memory's GPAs: the region fast path would take bus for GPA",
  },
  {
    file: "src/virtio/packed/device.ts",
    line: 513,
    from: "if (!enabled) return false;",
    to: "if (enabled) return false;",
    target: "packed-hostile-driver",
    why: "the pre-roll toggles notifications with a buffer available: enabling must say so",
  },
  {
    file: "src/dma/iotlb.ts",
    line: 222,
    from: "if (f[o] === pfn && f[o + 1] === this.#fCur",
    to: "if (f[o] !== pfn && f[o + 1] === this.#fCur",
    target: "dma-modes",
    why: "after each IOTLB op, probeFront of a page sharing a cached page's slot must miss",
  },
  {
    file: "src/dma/iotlb.ts",
    line: 526,
    from: "while (sl[i << 2] === this.#cur && (sl[(i << 2) + 3] & 0xffff) === domain)",
    to: "while (sl[i << 2] !== this.#cur && (sl[(i << 2) + 3] & 0xffff) === domain)",
    target: "dma-modes",
    why: "after each IOTLB op, a two-domain IOTLB takes a scanning range and domain invalidation",
  },
  {
    file: "src/dma/types.ts",
    line: 69,
    from: "if (out.length < length) {",
    to: "if (false) {",
    target: "dma-invariants",
    why: "the window part calls translateContiguous across a window's end: not-contiguous",
  },
  {
    file: "src/virtio/split/driver.ts",
    line: 56,
    from: "export const SPLIT_INDIRECT_MAX_ENTRIES = 16;",
    to: "export const SPLIT_INDIRECT_MAX_ENTRIES = 17;",
    target: "split-hostile-device",
    why: "adds of up to 24 segments: 17 never fit an indirect table (indirect-policy)",
  },
  {
    file: "src/devices/virtio_iommu/stack.ts",
    line: 106,
    from: '} else if (t === "direct") {',
    to: "} else if (true) {",
    target: "viommu-stack",
    why: "one input in 16 builds a stack with a transport factory: the stack must use it",
  },
  {
    file: "src/dma/iommu.ts",
    line: 466,
    from: "if (!ok) break;",
    to: "if (true) break;",
    target: "dma-invariants",
    why: "a live multi-page mapping translates contiguously in one translateContiguous call",
  },
  {
    file: "src/virtio/split/device.ts",
    line: 455,
    from: "if (n === 0) return false;",
    to: "if (n === 0) return true;",
    target: "split-hostile-driver",
    why: "a flush with nothing pushed must not ask to notify (notification-decision)",
  },
  {
    file: "src/virtio/pair.ts",
    line: 150,
    from: "opts.ringGpa ?? 0",
    to: "opts.ringGpa || 0",
    target: "split-hostile-device",
    why: "createQueuePair refuses a ring GPA of NaN as misaligned (bad-config pair-nan), not 0",
  },
  {
    file: "src/dma/fallback_api.ts",
    line: 60,
    from: "if (bus >= 0) this.stats.direct++;",
    to: "if (true) this.stats.direct++;",
    target: "dma-invariants",
    why: "api part checks window-iommu's path counters against the maps it made (mapNumber -1)",
  },
  {
    file: "src/dma/iommu_api.ts",
    line: 193,
    from: "gpa + length > 4503599627370496",
    to: "gpa - length > 4503599627370496",
    target: "dma-invariants",
    why: "iommu part maps a buffer ending past 2^52: refused `mask` by the API, naming the buffer",
  },
  {
    file: "src/dma/iova_allocator.ts",
    line: 166,
    from: "const c = limitPfn <= PFN_4G ? 0 : 1;",
    to: "const c = limitPfn <= PFN_4G ? 0 : 2;",
    target: "dma-invariants",
    why: "iova part checks the cached-node search above 4 GiB too (a free moves cached_node up)",
  },
];

const ROOT = new URL("../../", import.meta.url).pathname;

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.name === "corpus") continue; // the mutant's campaign starts from an empty corpus
    const a = `${from}/${e.name}`, b = `${to}/${e.name}`;
    if (e.isDirectory) await copyTree(a, b);
    else if (e.isFile) await Deno.copyFile(a, b);
  }
}

for (const k of KILLS) {
  Deno.test(`mutant killed: ${k.file}:${k.line} ${k.from} -> ${k.to} (${k.target})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "virtq-kill-" });
    try {
      for (const d of ["src", "fuzz"]) await copyTree(`${ROOT}${d}`, `${dir}/${d}`);
      for (const f of ["deno.json", "deno.lock"]) await Deno.copyFile(`${ROOT}${f}`, `${dir}/${f}`);
      const path = `${dir}/${k.file}`;
      const lines = (await Deno.readTextFile(path)).split("\n");
      // The line the mutant was found at, or (after edits moved it) the nearest holding `from`.
      let n = -1;
      lines.forEach((l, i) => {
        if (l.includes(k.from) && (n < 0 || Math.abs(i + 1 - k.line) < Math.abs(n + 1 - k.line))) {
          n = i;
        }
      });
      assert(n >= 0, `${k.file} no longer holds "${k.from}": update this case`);
      // Several places hold `from`: edits above the mutant must not silently move the case to
      // another one of them (iommu.ts's "pfn * 4096 + offset" occurs four times).
      const places = lines.filter((l) => l.includes(k.from)).length;
      assert(
        places === 1 || Math.abs(n + 1 - k.line) <= 20,
        `${k.file}:${k.line}: "${k.from}" is now nearest at line ${n + 1}, one of ${places} ` +
          "places: check which one the mutant is and update this case's line",
      );
      assertEquals(lines[n].split(k.from).length, 2, `${k.file}:${n + 1} holds "${k.from}" once`);
      lines[n] = lines[n].replace(k.from, k.to);
      await Deno.writeTextFile(path, lines.join("\n"));
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "fuzz/main.ts",
          "--target",
          k.target,
          // a run budget, not a time budget: the campaign is the same on a loaded machine (the
          // slowest case here needs about 50,000 runs)
          "--runs",
          String(KILL_RUNS),
          "--seed",
          "1",
          "--workers",
          "1",
          "--corpus",
          `${dir}/corpus`,
        ],
        cwd: dir,
        env: { VIRTQ_FIXTURES_DIR: `${ROOT}tests/fixtures/qemu-7.2-linux-6.1` },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 1, `${k.why}: the campaign must fail on the mutant\n${text}`);
      assert(text.includes(`FAIL ${k.target}`), text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
