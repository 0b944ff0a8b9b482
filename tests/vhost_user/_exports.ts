// The faces the back-end tests use, in one place.
export * from "../../src/vhost_user/mod.ts";
export { type RingLayout, SgList } from "../../src/virtio/mod.ts";
