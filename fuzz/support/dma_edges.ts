/**
 * Edge operations for the `dma-modes` target: one small, self-contained setup per
 * `DmaMapError` reason that a random map/unmap sequence over the standard lab rarely or never
 * produces, each driven through the real models of `src/dma/` (and the virtio-iommu driver's
 * DMA API for `transport`). The oracle is the catalogue: the operation must fail with exactly
 * the predicted `DmaMapError` reason (spec / Linux rule cited per case), never succeed, never
 * throw anything else.
 * @module
 */

import {
  createDmaLab,
  createDmaMode,
  defaultViommuConfig,
  DmaMapError,
  GuestMemory,
  IOPTE_READ,
  IOPTE_WRITE,
  type ViommuSubmission,
  type ViommuTransport,
  VIRTIO_IOMMU_REQ_TAIL_SIZE,
  VIRTIO_IOMMU_S_IOERR,
  VirtioIommuDmaApi,
} from "../../src/mod.ts";
import { OracleFailure } from "../target.ts";

/** Number of edge kinds ({@link runDmaEdge} `kind` is taken modulo this). */
export const DMA_EDGE_KINDS = 8;

/** Names of the edge kinds, in `kind` order, with the reason each must produce. */
export const DMA_EDGES = [
  ["buffer outside every dma-ranges window", "window"],
  ["swiotlb pool exhausted", "pool-exhausted"],
  ["IOVA space below the DMA mask exhausted", "iova-exhausted"],
  ["coherent mapping of confidential private memory", "private-memory"],
  ["IOMMU mapping inside a reserved region (MSI window)", "reserved-region"],
  ["IOMMU mapping over a live mapping", "overlap"],
  ["IOMMU mapping of a GPA that is not 4 KiB-aligned", "misaligned"],
  ["virtio-iommu device answers ATTACH with S_IOERR / used length 0", "transport"],
] as const;

/** A virtio-iommu transport whose device answers every request with an error. */
class FailingTransport implements ViommuTransport {
  readonly name = "failing-requestq";
  requests = 0;
  batches = 0;
  constructor(readonly usedZero: boolean) {}
  submit(batch: readonly ViommuSubmission[]): void {
    this.batches++;
    for (const s of batch) {
      this.requests++;
      this.#answer(s.writable);
      s.used = this.usedZero ? 0 : VIRTIO_IOMMU_REQ_TAIL_SIZE;
    }
  }
  submitOne(_readable: Uint8Array, writable: Uint8Array): number {
    this.batches++;
    this.requests++;
    this.#answer(writable);
    return this.usedZero ? 0 : VIRTIO_IOMMU_REQ_TAIL_SIZE;
  }
  #answer(w: Uint8Array): void {
    w.fill(0, w.length - VIRTIO_IOMMU_REQ_TAIL_SIZE);
    w[w.length - VIRTIO_IOMMU_REQ_TAIL_SIZE] = VIRTIO_IOMMU_S_IOERR;
  }
}

/**
 * Runs edge `kind` (0..{@link DMA_EDGE_KINDS}-1, modulo) with variation `n`.
 * @returns the reason of the expected `DmaMapError` (for counting).
 * @throws OracleFailure `edge-outcome` when the operation succeeds or fails otherwise.
 */
export function runDmaEdge(kind: number, n: number): string {
  const k = ((kind % DMA_EDGE_KINDS) + DMA_EDGE_KINDS) % DMA_EDGE_KINDS;
  const [what, want] = DMA_EDGES[k];
  const rw = IOPTE_READ | IOPTE_WRITE;
  const op = (): void => {
    switch (k) {
      case 0: {
        // dma-direct through dma-ranges (Linux phys_to_dma): a buffer no window covers.
        const memory = GuestMemory.flat(0x40000);
        const mode = createDmaMode("window", memory, {
          windows: [{ cpuStart: 0, busStart: 0x8000_0000, size: 0x10000 }],
        });
        mode.api.map(0x10000 + (n % 0x30) * 0x1000, 1 + (n % 0x1000), 1);
        return;
      }
      case 1: {
        // swiotlb: more bytes in flight than the pool holds (Linux "swiotlb buffer is full").
        const lab = createDmaLab("swiotlb", {
          bufferSize: 0x40000,
          ringSize: 0x1000,
          poolSize: 0x8000,
        });
        const len = 0x2000 + (n % 0x2000);
        for (let i = 0; i < 16; i++) lab.mode.api.map(i * 0x4000, len, 1);
        return;
      }
      case 2: {
        // dma-iommu: the IOVA allocator finds no range below a small DMA mask.
        const lab = createDmaLab("iommu-strict", {
          bufferSize: 0x100000,
          ringSize: 0x1000,
          mask: 0xffff,
        });
        const len = 0x1000 * (1 + (n % 4));
        for (let i = 0; i < 64; i++) lab.mode.api.map((i % 16) * 0x10000, len, 1);
        return;
      }
      case 3: {
        // SEV/TDX: dma_alloc_coherent over private memory must be refused (never shared).
        const lab = createDmaLab("confidential", {
          bufferSize: 0x10000,
          ringSize: 0x1000,
          poolSize: 0x10000,
        });
        lab.mode.api.mapCoherent((n % 0x10) * 0x1000, 0x1000);
        return;
      }
      case 4: {
        // IOMMU: the x86 MSI window 0xFEE00000-0xFEEFFFFF is reserved (iommu_get_resv_regions).
        const mode = createDmaMode("iommu-strict", GuestMemory.flat(0x10000));
        mode.iommu!.map(mode.domain!, 0xfee0_0000 + (n % 0x100) * 0x1000, 0, 0x1000, rw);
        return;
      }
      case 5: {
        // IOMMU page table: a second mapping over a live one (Linux iommu_map -EEXIST).
        const mode = createDmaMode("iommu-strict", GuestMemory.flat(0x10000));
        const iova = 0x10_0000 + (n % 0x100) * 0x1000;
        mode.iommu!.map(mode.domain!, iova, 0, 0x2000, rw);
        mode.iommu!.map(mode.domain!, iova + (n % 2) * 0x1000, 0x4000, 0x1000, rw);
        return;
      }
      case 6: {
        // IOMMU page table: GPA not aligned to the 4 KiB granule.
        const mode = createDmaMode("iommu-strict", GuestMemory.flat(0x10000));
        mode.iommu!.map(mode.domain!, 0x10_0000, 1 + (n % 0xfff), 0x1000, rw);
        return;
      }
      default: {
        // virtio-iommu (spec §5.13.6): ATTACH answered with VIRTIO_IOMMU_S_IOERR or used 0.
        const api = new VirtioIommuDmaApi({
          transport: new FailingTransport((n & 1) === 1),
          config: defaultViommuConfig(),
          features: 0n,
          endpoint: 1 + (n % 8),
        });
        api.init();
        return;
      }
    }
  };
  try {
    op();
  } catch (e) {
    if (e instanceof DmaMapError && e.reason === want) return want;
    throw new OracleFailure(
      "edge-outcome",
      `${what}: threw ${e}, expected DmaMapError ${want}`,
      e,
    );
  }
  throw new OracleFailure("edge-outcome", `${what}: succeeded, expected DmaMapError ${want}`);
}
