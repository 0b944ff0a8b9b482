// The lower faces the pure vhost-user tests use.
export { createDmaMode, FakeClock } from "../../src/dma/mod.ts";
export { GuestMemory } from "../../src/memory/mod.ts";
