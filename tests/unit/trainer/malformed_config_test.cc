// Table-driven: every malformed config (file text and --set overrides, rows in malformed_config_cases.h) is
// rejected by the parser with a message that names the key or the file.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "tests/unit/trainer/malformed_config_cases.h"
#include "trainer/config.h"

namespace memtrain {
namespace {

using trainer::parse_config;

using testing_rows::cases;
using testing_rows::kData;
using testing_rows::Malformed;

class MalformedConfig : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedConfig, IsRejectedNamingTheKeyOrFile) {
  const Malformed& c = GetParam();
  const std::string text = c.add_data ? c.toml + kData : c.toml;
  absl::StatusOr<trainer::Config> config = parse_config(text, "configs/x.toml", c.overrides);
  ASSERT_FALSE(config.ok()) << "accepted:\n" << text;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_NE(config.status().message().find(c.expect), absl::string_view::npos)
      << "message: " << config.status().message() << "\nexpected to contain: " << c.expect;
}

INSTANTIATE_TEST_SUITE_P(Rows, MalformedConfig, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Malformed>& info) { return std::string(info.param.name); });

// The rows would pass vacuously if the valid base were itself rejected: check that it is accepted, alone and with
// a well-formed override.
TEST(MalformedConfigBase, ValidBaseIsAccepted) {
  absl::StatusOr<trainer::Config> config = parse_config(kData, "configs/x.toml", {"train.max_steps=5"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->train.max_steps, 5);
}

TEST(MalformedConfigBase, FileErrorsGiveThePosition) {
  absl::StatusOr<trainer::Config> config =
      parse_config(std::string("[train]\nmax_steps = 3.5\n") + kData, "configs/x.toml", {});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "train.max_steps: expected an integer, got float 3.5 (configs/x.toml:2:13)");
}

TEST(MalformedConfigBase, UnknownKeysPointAtTheKey) {
  absl::StatusOr<trainer::Config> config =
      parse_config(std::string("[train]\nseed = 1\n  max_stpes = 5\n") + kData, "configs/x.toml", {});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "train.max_stpes: unknown key; did you mean train.max_steps? (configs/x.toml:3:3)");
}

// Several mistakes in one file: the first one in file order is reported, not the first in key order.
TEST(MalformedConfigBase, FirstMistakeInFileOrderIsReported) {
  absl::StatusOr<trainer::Config> config = parse_config(
      std::string("[train]\nzzz = 1\naaa = 2\n[model]\nbogus = 1\n") + kData, "configs/x.toml", {});
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(absl::StartsWith(config.status().message(), "train.zzz: unknown key")) << config.status();
}

}  // namespace
}  // namespace memtrain
