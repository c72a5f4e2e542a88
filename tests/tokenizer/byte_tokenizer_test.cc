// The demo model's byte tokenizer.
#include <gtest/gtest.h>

#include <vector>

#include "common/tokenizer/tokenizer.h"

namespace flatfleet::tokenizer {
namespace {

TEST(ByteTokenizerTest, LayoutAndRoundTrip) {
  auto tok = MakeByteTokenizer();
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{257});
  auto ids = tok->Encode("hé", /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{256, 'h', 0xC3, 0xA9}));
  EXPECT_EQ(tok->Decode(*ids), "<bos>hé");
  EXPECT_EQ(tok->Decode(*ids, /*skip_special_tokens=*/true), "hé");
  EXPECT_TRUE(tok->IsSpecial(257));
  EXPECT_FALSE(tok->IsSpecial(255));
  EXPECT_EQ(tok->TokenToId("<eos>"), 257);
  EXPECT_EQ(tok->TokenToId("<0x41>"), 0x41);
  EXPECT_EQ(tok->IdToToken(0x41), "<0x41>");
  EXPECT_EQ(tok->TokenToId("nope"), std::nullopt);
}

TEST(ByteTokenizerTest, InvalidBytesDecodeLossily) {
  auto tok = MakeByteTokenizer();
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{0xC3, 'a', 0xFF, 9999, -1}),
            "\xEF\xBF\xBD"
            "a\xEF\xBF\xBD");
  auto ids = tok->Encode("\xFF\xFE");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{0xFF, 0xFE}));
}

}  // namespace
}  // namespace flatfleet::tokenizer
