// Instruction data with the byte tokenizer (a token per byte, so layouts can be written out): the prompt/response
// and chat templates train exactly the response, the assistant turns and the end marker; padded and packed rows
// with their targets, segments and positions; truncation; errors naming the file and line.
#include "data/instruction_data.h"

#include <gtest/gtest.h>

#include "data/byte_tokenizer.h"
#include "tests/unit/data/test_dir.h"

namespace memtrain::data {
namespace {

using testing_util::TestDir;
using testing_util::write_bytes;

const InstructionTemplate kTemplate{"Q:{prompt}\nA:", "{response}", "<{role}>{content}|", "$"};

std::vector<uint8_t> flags(const std::string& pattern) {  // "0001" -> {0, 0, 0, 1}
  std::vector<uint8_t> out;
  for (char c : pattern) out.push_back(c == '1');
  return out;
}

TEST(InstructionData, TemplatesTrainTheResponseAndTheAssistantTurns) {
  TestDir dir;
  write_bytes(dir.file("d.jsonl"), "{\"prompt\": \"hi\", \"response\": \"yo\"}\n\n"
                                   "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"},"
                                   " {\"role\": \"assistant\", \"content\": \"b\"}]}\n");
  const ByteTokenizer bytes;
  auto examples = read_instructions(dir.file("d.jsonl"), bytes, kTemplate);
  ASSERT_TRUE(examples.ok()) << examples.status();
  ASSERT_EQ(examples->size(), 2u);
  EXPECT_EQ((*examples)[0].tokens, bytes.encode("Q:hi\nA:yo$"));
  EXPECT_EQ((*examples)[0].trained, flags("0000000111"));
  EXPECT_EQ((*examples)[1].tokens, bytes.encode("<user>a|<assistant>b|$"));
  EXPECT_EQ((*examples)[1].trained, flags("0000000000000000000111"));  // 19 untrained, then b, | and $
}

TEST(InstructionData, PaddedRowsHoldOneExampleWithTargetsOnlyWhereTrained) {
  const ByteTokenizer bytes;
  const Example e{bytes.encode("Q:hi\nA:yo$"), flags("0000000111")};
  const InstructionRows r = layout_examples({e}, 12, /*packing=*/false, /*pad_id=*/0);
  ASSERT_EQ(r.rows, 1);
  EXPECT_EQ(r.inputs, (std::vector<int32_t>{'Q', ':', 'h', 'i', '\n', 'A', ':', 'y', 'o', 0, 0, 0}));
  EXPECT_EQ(r.targets, (std::vector<int32_t>{-1, -1, -1, -1, -1, -1, 'y', 'o', '$', -1, -1, -1}));
  EXPECT_EQ(r.segments, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1}));
  EXPECT_EQ(r.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0}));
  EXPECT_EQ(r.first, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 10, 11}));
}

TEST(InstructionData, PackedRowsKeepExamplesApartAndTruncateTheLongOnes) {
  const Example a{{1, 2, 3, 4, 5}, flags("00111")}, b{{6, 7, 8, 9}, flags("0111")},
      c{{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, flags("0000000001")};
  const InstructionRows r = layout_examples({a, b, c}, 8, /*packing=*/true, /*pad_id=*/0);
  ASSERT_EQ(r.rows, 2);
  EXPECT_EQ(r.truncated, 1);
  EXPECT_EQ(r.inputs, (std::vector<int32_t>{1, 2, 3, 4, 6, 7, 8, 0, 10, 11, 12, 13, 14, 15, 16, 17}));
  EXPECT_EQ(r.targets, (std::vector<int32_t>{-1, 3, 4, 5, 7, 8, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1}));
  EXPECT_EQ(r.segments, (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 1, -1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(r.positions, (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(r.first, (std::vector<int32_t>{0, 0, 0, 0, 4, 4, 4, 7, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(InstructionData, BadRecordsNameTheFileAndLine) {
  TestDir dir;
  const ByteTokenizer bytes;
  struct Case {
    std::string line, why;
  };
  for (const Case& c : {Case{"{not json", "not JSON"}, Case{"{\"prompt\": \"x\"}", "needs string \"prompt\""},
                        Case{"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", "unknown role 'robot'"},
                        Case{"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "no assistant message"},
                        Case{"[1, 2]", "not a JSON object"}}) {
    write_bytes(dir.file("bad.jsonl"), "{\"prompt\": \"p\", \"response\": \"r\"}\n" + c.line + "\n");
    auto r = read_instructions(dir.file("bad.jsonl"), bytes, kTemplate);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find("bad.jsonl:2: " + c.why), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace memtrain::data
