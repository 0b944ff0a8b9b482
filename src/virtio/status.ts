/**
 * Device status field bits (spec §2.1 "Device Status Field").
 * @module
 */

/** The guest OS has noticed the device. */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
/** The guest OS knows how to drive the device. */
export const VIRTIO_CONFIG_S_DRIVER = 2;
/** The driver is set up and ready to drive the device. */
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
/** Feature negotiation is complete. */
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
/** The device hit an unrecoverable error and needs a reset (spec §2.1.2). */
export const VIRTIO_CONFIG_S_NEEDS_RESET = 64;
/** The guest gave up on the device. */
export const VIRTIO_CONFIG_S_FAILED = 128;
