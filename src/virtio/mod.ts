/**
 * The virtqueue engine: feature bits, device status, the error catalogue ({@link VirtqError}
 * codes), split and packed rings on both sides (a {@link DriverQueue} adds buffers and collects
 * used ones; a {@link DeviceQueue} pops validated, translated {@link Chain}s and pushes them back),
 * scatter-gather lists. It sits on the DMA layer: the driver maps every buffer through a
 * `DmaApi`, the device translates every descriptor through a `DmaAddressSpace`.
 *
 * A hostile ring never crashes the device: `pop` throws a `VirtqError` with a catalogue code and
 * the queue is broken (NEEDS_RESET), keeping what was already completed.
 *
 * @example One buffer through a split ring, device side by hand
 * ```ts
 * import { createQueuePair, SgList } from "@virtq-lab/virtq-lab/virtio";
 * import { assertEquals } from "@std/assert";
 *
 * const { memory, driver, device, dataGpa } = createQueuePair<string>({ layout: "split", size: 8 });
 * memory.write(dataGpa, new TextEncoder().encode("ping"));
 * driver.add(SgList.of([dataGpa, 4]), SgList.of([dataGpa + 0x100, 16]), "req");
 * driver.kick();
 *
 * const chain = device.pop()!; // validated and translated: readable bytes first, then writable
 * assertEquals([chain.readableBytes, chain.writableBytes], [4, 16]);
 * device.push(chain, 4); // the device wrote 4 bytes
 * device.flush();
 *
 * assertEquals(driver.getUsed(), "req");
 * assertEquals(driver.usedLen, 4);
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./features.ts";
export * from "./status.ts";
export * from "./errors.ts";
export * from "./sg_list.ts";
export * from "./chain.ts";
export * from "./queue.ts";
export * from "./split/layout.ts";
export * from "./split/device.ts";
export * from "./split/driver.ts";
export * from "./factory.ts";
export * from "./pair.ts";
export * from "./packed/layout.ts";
export * from "./packed/driver.ts";
export * from "./packed/device.ts";
export * from "./rules.ts";
export * from "./ring_builder.ts";
