import { assertEquals } from "@std/assert";
import {
  addressWrapRule,
  chainBytesRule,
  chainLengthRule,
  framingRule,
  indirectDescriptorRule,
  indirectEntryRule,
  indirectInListRule,
  nextIndexRule,
  PACKED_DEVICE_ERROR_CODES,
  RULE_OK,
  ruleDetail,
  segmentLimitRule,
  SPLIT_DEVICE_ERROR_CODES,
  unknownFlagsRule,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_ERRORS,
  virtqErrorCodes,
  zeroLengthRule,
} from "../../src/virtio/mod.ts";

const IND = VIRTQ_DESC_F_INDIRECT;

Deno.test("rules: indirect descriptor (§2.7.5.3 / §2.8.7), one code per violation, in order", () => {
  assertEquals(indirectDescriptorRule(IND, 0x1000, 0, 32, true, true, 256), RULE_OK);
  assertEquals(
    indirectDescriptorRule(IND, 0x1000, 0, 32, false, true, 256),
    "INDIRECT_NOT_NEGOTIATED",
  );
  assertEquals(
    indirectDescriptorRule(IND | VIRTQ_DESC_F_NEXT, 0x1000, 0, 32, true, true, 256),
    "INDIRECT_WITH_NEXT",
  );
  assertEquals(
    indirectDescriptorRule(IND | VIRTQ_DESC_F_NEXT, 0x1000, 0, 32, true, false, 256),
    RULE_OK,
  );
  assertEquals(indirectDescriptorRule(IND, 0x1000, 0, 0, true, true, 256), "INDIRECT_LEN_ZERO");
  assertEquals(
    indirectDescriptorRule(IND, 0x1000, 0, 20, true, true, 256),
    "INDIRECT_LEN_MISALIGNED",
  );
  assertEquals(
    indirectDescriptorRule(IND, 0x1000, 0, 16 * 257, true, true, 256),
    "INDIRECT_TABLE_TOO_LONG",
  );
  assertEquals(indirectDescriptorRule(IND, 0x1000, 0, 16 * 256, true, true, 256), RULE_OK);
  // Precedence: negotiation first (as the split reference decoder expects).
  assertEquals(
    indirectDescriptorRule(IND | VIRTQ_DESC_F_NEXT, 0x1000, 0, 0, false, true, 1),
    "INDIRECT_NOT_NEGOTIATED",
  );
});

Deno.test("rules: packed precedence checks INDIRECT_WITH_NEXT before negotiation", () => {
  const both = IND | VIRTQ_DESC_F_NEXT;
  assertEquals(
    indirectDescriptorRule(both, 0x1000, 0, 32, false, true, 8),
    "INDIRECT_NOT_NEGOTIATED",
  );
  assertEquals(
    indirectDescriptorRule(both, 0x1000, 0, 32, false, true, 8, true),
    "INDIRECT_WITH_NEXT",
  );
  assertEquals(
    indirectDescriptorRule(both, 0x1000, 0, 32, false, false, 8, true),
    "INDIRECT_NOT_NEGOTIATED",
  );
});

Deno.test("rules: table entries, lists, flags, lengths, framing, bounds", () => {
  assertEquals(indirectEntryRule(IND), "INDIRECT_NESTED");
  assertEquals(indirectEntryRule(VIRTQ_DESC_F_NEXT), RULE_OK);
  assertEquals(indirectInListRule(1), RULE_OK);
  assertEquals(indirectInListRule(2), "PACKED_INDIRECT_IN_LIST");
  assertEquals(unknownFlagsRule(8, 7, true), "DESC_UNKNOWN_FLAGS");
  assertEquals(unknownFlagsRule(8, 7, false), RULE_OK);
  assertEquals(zeroLengthRule(0, true), "DESC_ZERO_LENGTH");
  assertEquals(zeroLengthRule(0, false), RULE_OK);
  assertEquals(framingRule(false, true), "DESC_READABLE_AFTER_WRITABLE");
  assertEquals(framingRule(true, true), RULE_OK);
  assertEquals(chainBytesRule(0xffff_ffff), RULE_OK);
  assertEquals(chainBytesRule(0x1_0000_0000), "CHAIN_TOO_MANY_BYTES");
  assertEquals(chainLengthRule(257, 256), "DESC_CHAIN_LOOP");
  assertEquals(nextIndexRule(256, 256), "DESC_NEXT_OUT_OF_RANGE");
  assertEquals(addressWrapRule(0xffff_fff0, 0xffff_ffff, 0x10), RULE_OK);
  assertEquals(addressWrapRule(0xffff_fff0, 0xffff_ffff, 0x11), "DESC_ADDR_WRAP");
  assertEquals(segmentLimitRule(4, 4), "CHAIN_TOO_MANY_SEGMENTS");
  assertEquals(
    ruleDetail("INDIRECT_LEN_MISALIGNED", "slot", 3, 20),
    "indirect slot 3 has len 20, not a multiple of 16",
  );
});

Deno.test("catalogue: per-layout code lists are derived from each entry's layouts", () => {
  for (const [code, info] of Object.entries(VIRTQ_ERRORS)) {
    assertEquals(info.layouts.length > 0, true, code);
  }
  assertEquals(PACKED_DEVICE_ERROR_CODES, virtqErrorCodes("packed", "device"));
  assertEquals(SPLIT_DEVICE_ERROR_CODES, virtqErrorCodes("split", "device"));
  assertEquals(PACKED_DEVICE_ERROR_CODES.includes("AVAIL_IDX_JUMP"), false);
  assertEquals(SPLIT_DEVICE_ERROR_CODES.includes("PACKED_CHAIN_UNAVAILABLE"), false);
});
