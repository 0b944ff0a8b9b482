/**
 * Saved queue state for migration and vhost-user back-end reconnect: the vring base value of
 * `VHOST_USER_GET_VRING_BASE` / `VHOST_USER_SET_VRING_BASE` (QEMU docs/interop/vhost-user.rst
 * "vring descriptor index": split bits 0-15 the next available ring index, bits 16-31 reserved;
 * packed bits 0-14 the next descriptor ring offset, bit 15 its (driver) wrap counter, bits 16-30
 * the next used offset, bit 31 the used wrap counter), and restoring a {@link VirtqueueState}
 * into a fresh device queue (`restoreState` of the split and packed device engines).
 *
 * @module
 */

import {
  type Chain,
  type DeviceQueue,
  type RingLayout,
  VirtqError,
  type VirtqueueState,
} from "../virtio/mod.ts";

/**
 * The vhost-user vring base value of a state (`GET_VRING_BASE` reply `num`).
 * @throws VirtqError `RESTORE_STATE_INVALID` when a field does not fit its bits.
 */
export function encodeVringBase(state: VirtqueueState): number {
  const fits = (v: number, max: number) => Number.isInteger(v) && v >= 0 && v <= max;
  if (state.layout === "split") {
    if (!fits(state.lastAvail, 0xffff)) {
      throw new VirtqError("RESTORE_STATE_INVALID", `split last_avail_idx ${state.lastAvail}`);
    }
    return state.lastAvail;
  }
  if (
    !fits(state.lastAvail, 0x7fff) || !fits(state.used, 0x7fff) || !fits(state.availWrap, 1) ||
    !fits(state.usedWrap, 1)
  ) {
    throw new VirtqError(
      "RESTORE_STATE_INVALID",
      `packed avail ${state.lastAvail}/${state.availWrap}, used ${state.used}/${state.usedWrap}`,
    );
  }
  return (state.lastAvail | (state.availWrap << 15) | (state.used << 16) |
    (state.usedWrap << 31)) >>> 0;
}

/**
 * The state a `SET_VRING_BASE` value describes. vhost-user carries no in-flight list (without
 * the inflight shared memory), so `inFlight` is empty; for split the used `idx` is not in the
 * value: the back-end reads it from the used ring (`usedIdx`, as DPDK and QEMU's libvhost-user
 * do), so a state with buffers still in flight is then detected by the restore
 * (`RESTORE_RING_MISMATCH`), not consumed silently. See {@link rewindToUsed}.
 * @param usedIdx split only: the used ring's `idx`.
 * @throws VirtqError `RESTORE_STATE_INVALID` (split: reserved bits 16-31 set; packed: an offset
 * not below `size`).
 */
export function decodeVringBase(
  layout: RingLayout,
  size: number,
  num: number,
  usedIdx = 0,
): VirtqueueState {
  const v = num >>> 0;
  if (layout === "split") {
    if ((v >>> 16) !== 0) {
      throw new VirtqError(
        "RESTORE_STATE_INVALID",
        `split vring base 0x${v.toString(16)}: bits 16-31 are reserved`,
      );
    }
    return {
      layout,
      size,
      lastAvail: v,
      availWrap: 0,
      used: usedIdx & 0xffff,
      usedWrap: 0,
      inFlight: [],
    };
  }
  const state: VirtqueueState = {
    layout,
    size,
    lastAvail: v & 0x7fff,
    availWrap: (v >>> 15) & 1,
    used: (v >>> 16) & 0x7fff,
    usedWrap: v >>> 31,
    inFlight: [],
  };
  if (state.lastAvail >= size || state.used >= size) {
    throw new VirtqError(
      "RESTORE_STATE_INVALID",
      `packed vring base 0x${
        v.toString(16)
      }: offsets ${state.lastAvail} / ${state.used} not below ${size}`,
    );
  }
  return state;
}

/**
 * The state with every in-flight buffer given back to the ring: the available position rewound
 * to the used one, nothing in flight (QEMU `virtio_queue_restore_last_avail_idx` after a
 * back-end died, `virtqueue_rewind`): the device processes those buffers again.
 */
export function rewindToUsed(state: VirtqueueState): VirtqueueState {
  return {
    ...state,
    lastAvail: state.used,
    availWrap: state.layout === "packed" ? state.usedWrap : 0,
    inFlight: [],
  };
}

/** A device queue that can save and restore its state (both engines). */
export interface RestorableDeviceQueue extends DeviceQueue {
  /** See the engines' `saveState`. */
  saveState(): VirtqueueState;
  /** See the engines' `restoreState`. */
  restoreState(state: VirtqueueState): Chain[];
}

/** True when `q` implements save/restore (the split and packed device engines do). */
export function isRestorable(q: DeviceQueue): q is RestorableDeviceQueue {
  const r = q as Partial<RestorableDeviceQueue>;
  return typeof r.saveState === "function" && typeof r.restoreState === "function";
}
