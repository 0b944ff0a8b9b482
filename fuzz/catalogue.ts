/**
 * The full list of error codes a campaign should reach: the virtqueue catalogue
 * (`VIRTQ_ERROR_CODES`) plus every `DmaFault` and `DmaMapError` reason, in the form
 * `fuzz/observe.ts` records them.
 * @module
 */

import { DMA_FAULT_REASONS, DMA_MAP_ERROR_REASONS, DmaFault, DmaMapError } from "../src/dma/mod.ts";
import { VIRTQ_ERROR_CODES, VirtqError } from "../src/virtio/mod.ts";
import { observeConstructions } from "./observe.ts";

/** Every catalogued error code, in catalogue order (virtqueue codes first, then DMA). */
export const CATALOGUE_CODES: readonly string[] = [
  ...VIRTQ_ERROR_CODES,
  ...DMA_FAULT_REASONS.map((r) => `DMA_FAULT(${r})`),
  ...DMA_MAP_ERROR_REASONS.map((r) => `DMA_MAP_ERROR(${r})`),
];

const VIRTQ_CODES = new Set<string>(VIRTQ_ERROR_CODES);

/**
 * Makes the runner record every catalogued error the engine raises, whether or not a target
 * notes it: `VirtqError` (code from its message `CODE: ...`), `DmaFault` and `DmaMapError`
 * (`DMA_FAULT(reason) ...`). `tests/fuzz/fuzz_runner_test.ts` checks it still works for each class.
 */
export function observeCatalogueErrors(): void {
  observeConstructions(VirtqError, (e) => {
    const code = /^([A-Z_]+):/.exec(e.message)?.[1];
    return code !== undefined && VIRTQ_CODES.has(code) ? code : undefined;
  });
  const dma = (e: Error) => {
    const m = /^(DMA_FAULT|DMA_MAP_ERROR)\(([a-z-]+)\)/.exec(e.message);
    return m === null ? undefined : `${m[1]}(${m[2]})`;
  };
  observeConstructions(DmaFault, dma);
  observeConstructions(DmaMapError, dma);
}
