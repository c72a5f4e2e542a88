#include "coordinator/bounded_line_reader.h"

#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

std::vector<BoundedLine> ReadAll(const std::string& text, uint64_t max_line_bytes) {
  std::istringstream in(text);
  BoundedLineReader reader(in, max_line_bytes);
  std::vector<BoundedLine> lines;
  BoundedLine line;
  while (reader.Next(line)) lines.push_back(line);
  EXPECT_FALSE(reader.failed());
  return lines;
}

TEST(BoundedLineReaderTest, SplitsOnNewlinesAndKeepsAFinalLineWithoutOne) {
  const std::vector<BoundedLine> lines = ReadAll("a\n\nbc\nlast", 10);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].text, "a");
  EXPECT_EQ(lines[1].text, "");
  EXPECT_EQ(lines[2].text, "bc");
  EXPECT_EQ(lines[3].text, "last");
  EXPECT_EQ(lines[3].bytes, 4u);
  EXPECT_TRUE(ReadAll("", 10).empty());
  EXPECT_EQ(ReadAll("x\n", 10).size(), 1u);
}

TEST(BoundedLineReaderTest, AnOversizedLineIsReportedBySizeAcrossChunks) {
  // Longer than the reader's 64 KiB chunks, so the line spans several reads.
  const std::string huge(200'000, 'z');
  const std::vector<BoundedLine> lines = ReadAll("ok\n" + huge + "\nafter\n" + huge, 1000);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].text, "ok");
  EXPECT_TRUE(lines[1].oversized);
  EXPECT_EQ(lines[1].bytes, huge.size());
  EXPECT_TRUE(lines[1].text.empty());
  EXPECT_EQ(lines[2].text, "after");
  EXPECT_FALSE(lines[2].oversized);
  EXPECT_TRUE(lines[3].oversized);
  // Exactly at the bound is fine; one byte more is not.
  EXPECT_FALSE(ReadAll(std::string(1000, 'a'), 1000)[0].oversized);
  EXPECT_TRUE(ReadAll(std::string(1001, 'a'), 1000)[0].oversized);
}

}  // namespace
}  // namespace flatfleet::coordinator
