// ShmSegment: bytes written through one mapping are read through another, and after the writer's process is gone
// (a child killed with SIGKILL); the object is 0600; names are checked; a full /dev/shm is an error at creation.
#include "checkpoint/shm_segment.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

namespace memtrain::checkpoint {
namespace {

std::string unique(const std::string& what) { return "memtrain-test." + what + "." + std::to_string(getpid()); }

TEST(ShmSegment, OutlivesAWriterKilledWithSigkill) {
  const std::string name = unique("killed");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = ShmSegment::create(name, 1 << 20);
    if (!s.ok()) _exit(1);
    std::memset(s->data(), 0x5A, 1 << 20);
    s->data()[12345] = 7;
    raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child could not create the segment";
  auto s = ShmSegment::open(name);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->bytes(), 1 << 20);
  EXPECT_EQ(s->data()[12345], 7);
  EXPECT_EQ(s->data()[0], 0x5A);
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::vector<std::string> listed = ShmSegment::list(unique("killed"));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0], name);
  ASSERT_TRUE(ShmSegment::unlink(name).ok());
  EXPECT_EQ(s->data()[12345], 7);  // a mapping stays valid after the unlink
  EXPECT_EQ(ShmSegment::open(name).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ShmSegment::unlink(name).code(), absl::StatusCode::kNotFound);
}

TEST(ShmSegment, RefusesTakenAndBadNames) {
  const std::string name = unique("taken");
  auto a = ShmSegment::create(name, 4096);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(ShmSegment::create(name, 4096).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ShmSegment::create("a/b", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmSegment::open("").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(ShmSegment::unlink(name).ok());
}

TEST(ShmSegment, AFullDevShmFailsAtCreation) {
  const std::string name = unique("huge");
  const auto s = ShmSegment::create(name, int64_t{1} << 50);  // a petabyte
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/dev/shm/" + name), std::string::npos) << s.status();
  EXPECT_TRUE(ShmSegment::list(name).empty()) << "a failed creation left its name";
}

}  // namespace
}  // namespace memtrain::checkpoint
