// Every malformed config of the shared table (tests/unit/trainer/malformed_config_cases.h), run through the binary:
// exit status 2, exactly one stderr line, starting "error: " and naming the key or file, nothing written anywhere
// under the working directory (so neither output.dir nor its default), and no crash.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/integration/cli.h"
#include "tests/unit/trainer/malformed_config_cases.h"

namespace memtrain {
namespace {

using testing_rows::Malformed;

std::string shell_quote(const std::string& s) { return "'" + absl::StrReplaceAll(s, {{"'", "'\\''"}}) + "'"; }

class MalformedConfigCli : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedConfigCli, ExitsTwoWithOneErrorLineAndWritesNothing) {
  const Malformed& c = GetParam();
  for (const std::string& o : c.overrides)
    if (o.find('\0') != std::string::npos) GTEST_SKIP() << "a NUL byte cannot pass through argv";
  const std::string root = ::testing::TempDir() + "memtrain_badcfg_" + std::to_string(getpid());
  const std::string work = root + "/work";
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(work);
  {
    std::ofstream f(work + "/bad.toml", std::ios::binary);
    f << (c.add_data ? c.toml + testing_rows::kData : c.toml);
  }
  std::string cmd = absl::StrCat("cd ", shell_quote(work), " && '", MEMTRAIN_BINARY_DIR, "/memtrain' train bad.toml");
  for (const std::string& o : c.overrides) absl::StrAppend(&cmd, " --set ", shell_quote(o));
  absl::StrAppend(&cmd, " >", root, "/out 2>", root, "/err");
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal: " << c.name;
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string err = testing::slurp(root + "/err");
  EXPECT_EQ(err.rfind("error: ", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line expected:\n" << err;
  // The parser test names the file configs/x.toml; here it is bad.toml.
  const std::string expect = absl::StrReplaceAll(c.expect, {{"configs/x.toml", "bad.toml"}});
  EXPECT_NE(err.find(expect), std::string::npos) << err << "\nexpected to contain: " << expect;
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::recursive_directory_iterator(work)) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"bad.toml"}) << "a rejected config wrote files";
  std::filesystem::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(Rows, MalformedConfigCli, ::testing::ValuesIn(testing_rows::cases()),
                         [](const ::testing::TestParamInfo<Malformed>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace memtrain
