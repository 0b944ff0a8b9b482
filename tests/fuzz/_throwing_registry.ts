/** A registry whose module load throws (for the load watchdog test). */
throw new Error("seed build failed: RING_UNMAPPED");
