/**
 * The virtqueue engine: feature bits, device status, the error catalogue, split and packed rings (driver and device side), chains and scatter-gather lists.
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
