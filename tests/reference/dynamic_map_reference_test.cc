// The 8-bit code books against bitsandbytes' algorithm run with torch (tests/reference/dynamic_map.py): all 256
// values of both books within 2 units in the last place (torch computes in fp32 with its own rounding; memtrain
// rounds the exact values once), which is 1e4 times finer than the gap between neighbouring codes, so a wrong
// exponent, fraction count or midpoint fails. Skipped when /usr/bin/python3 cannot import torch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "core/cpu/dynamic_map.h"

namespace memtrain {
namespace {

TEST(DynamicMapReference, BothBooksEqualTorchsToTheLastBits) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no torch";
  const std::string cmd = "/usr/bin/python3 " MEMTRAIN_SOURCE_DIR "/tests/reference/dynamic_map.py";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  std::istringstream lines(out);
  for (bool is_signed : {true, false}) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line));
    std::istringstream values(line);
    const cpu::CodeBook& book = cpu::dynamic_code_book(is_signed);
    for (int i = 0; i < 256; ++i) {
      std::string hex;
      ASSERT_TRUE(values >> hex) << i;
      const float want = static_cast<float>(std::strtod(hex.c_str(), nullptr));
      const float ulp = std::nextafter(std::fabs(want), 2.0f) - std::fabs(want);
      EXPECT_LE(std::fabs(book[i] - want), 2 * ulp) << (is_signed ? "signed" : "unsigned") << " code " << i;
    }
  }
}

}  // namespace
}  // namespace memtrain
