/**
 * The full list of error codes a campaign should reach: the virtqueue catalogue
 * (`VIRTQ_ERROR_CODES`) plus every `DmaFault` and `DmaMapError` reason, in the form
 * `fuzz/observe.ts` records them.
 * @module
 */

import { DMA_FAULT_REASONS, DMA_MAP_ERROR_REASONS } from "../src/dma/errors.ts";
import { VIRTQ_ERROR_CODES } from "../src/virtio/errors.ts";

/** Every catalogued error code, in catalogue order (virtqueue codes first, then DMA). */
export const CATALOGUE_CODES: readonly string[] = [
  ...VIRTQ_ERROR_CODES,
  ...DMA_FAULT_REASONS.map((r) => `DMA_FAULT(${r})`),
  ...DMA_MAP_ERROR_REASONS.map((r) => `DMA_MAP_ERROR(${r})`),
];
