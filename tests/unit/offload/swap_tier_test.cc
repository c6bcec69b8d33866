// The swap tiers: what is written comes back bit for bit (sizes below, at and across the 4 MiB staging chunks,
// many tickets in flight, reads in another order than writes), freed space is reused, and the SSD file is 0600,
// unlinked while in use and refuses bad directories and full disks with the reason.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "offload/host_swap.h"
#include "offload/ssd_swap.h"

namespace memtrain::offload {
namespace {

std::string temp_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "memtrain_swap_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

Tensor random_tensor(int64_t n, uint32_t seed) {
  Tensor t = *Tensor::empty({n}, DType::kF32, MemCategory::kActivations);
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < n; ++i) t.f32()[i] = std::bit_cast<float>(static_cast<uint32_t>(rng()));  // any bits
  return t;
}

void expect_round_trips(SwapTier& tier) {
  const int64_t written = tier.bytes_written(), read = tier.bytes_read();
  const std::vector<int64_t> sizes = {1, 17, 1024, 1025, SsdSwap::kChunk / 4, SsdSwap::kChunk / 4 + 3,
                                      3 * SsdSwap::kChunk / 4 + 5};
  std::vector<Tensor> originals;
  std::vector<uint64_t> tickets;
  for (size_t i = 0; i < sizes.size(); ++i) {
    originals.push_back(random_tensor(sizes[i], static_cast<uint32_t>(i)));
    tickets.push_back(*tier.write(originals.back()));
  }
  // Back in reverse order, as backward reads them, while later writes are still queued.
  for (size_t k = sizes.size(); k-- > 0;) {
    Tensor back = *Tensor::empty({sizes[k]}, DType::kF32, MemCategory::kActivations);
    ASSERT_TRUE(tier.read(tickets[k], back).ok());
    ASSERT_TRUE(tier.wait(tickets[k]).ok());
    EXPECT_EQ(std::memcmp(back.raw(), originals[k].raw(), back.nbytes()), 0) << "size " << sizes[k];
    tier.release(tickets[k]);
  }
  int64_t total = 0;
  for (int64_t n : sizes) total += 4 * n;
  EXPECT_EQ(tier.bytes_written() - written, total);
  EXPECT_EQ(tier.bytes_read() - read, total);
}

TEST(HostSwap, RoundTripsBitForBit) {
  expect_round_trips(*HostSwap::create());
  // The copies live in `swap` until released.
  auto tier = HostSwap::create();
  const int64_t before = MemoryTracker::host().current(MemCategory::kSwap);
  Tensor t = random_tensor(1000, 9);
  const uint64_t k = *tier->write(t);
  ASSERT_TRUE(tier->wait(k).ok());
  EXPECT_EQ(MemoryTracker::host().current(MemCategory::kSwap) - before, 4000);
  tier->release(k);
  ASSERT_TRUE(tier->wait(*tier->write(t)).ok());  // a job after the release: the release is done
  EXPECT_EQ(MemoryTracker::host().current(MemCategory::kSwap) - before, 4000);
}

TEST(SsdSwap, RoundTripsBitForBitAndReusesFreedSpace) {
  const std::string dir = temp_dir("roundtrip");
  auto tier = SsdSwap::create(dir, "r0");
  ASSERT_TRUE(tier.ok()) << tier.status();
  std::printf("O_DIRECT %s, io_uring %s\n", (*tier)->direct() ? "yes" : "no", (*tier)->uses_io_uring() ? "yes" : "no");
  expect_round_trips(**tier);
  const int64_t high = (*tier)->file_bytes();
  expect_round_trips(**tier);  // everything was released: the same space again
  EXPECT_EQ((*tier)->file_bytes(), high);
}

TEST(SsdSwap, FileIsPrivateAndUnlinkedWhileOpen) {
  const std::string dir = temp_dir("mode");
  ::umask(0);  // a permissive umask must not widen the mode
  auto tier = SsdSwap::create(dir, "r3");
  ::umask(022);
  ASSERT_TRUE(tier.ok()) << tier.status();
  struct stat st;
  ASSERT_EQ(::fstat((*tier)->fd(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_nlink, 0u) << "unlinked at once, so no exit path can leave it behind";
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  EXPECT_NE((*tier)->path().find("memtrain-swap-r3-"), std::string::npos);
}

TEST(SsdSwap, BadDirectoriesSayWhy) {
  const std::string dir = temp_dir("bad");
  auto missing = SsdSwap::create(dir + "/nope", "r0");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir + "/nope"), std::string::npos) << missing.status();
  EXPECT_NE(missing.status().message().find("No such file or directory"), std::string::npos) << missing.status();
  std::FILE* f = std::fopen((dir + "/file").c_str(), "w");
  std::fclose(f);
  auto not_dir = SsdSwap::create(dir + "/file", "r0");
  ASSERT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.status().message().find("is not a directory"), std::string::npos) << not_dir.status();
  if (geteuid() != 0) {  // root writes anywhere
    std::filesystem::create_directories(dir + "/ro");
    ::chmod((dir + "/ro").c_str(), 0500);
    auto ro = SsdSwap::create(dir + "/ro", "r0");
    ASSERT_FALSE(ro.ok());
    EXPECT_NE(ro.status().message().find("Permission denied"), std::string::npos) << ro.status();
  }
}

// A small tmpfs filled by the swap: the write that does not fit fails with the file system's reason, and the
// tickets written before still read back.
TEST(SsdSwap, FullDiskFailsTheWriteWithTheReason) {
  const std::string dir = temp_dir("full");
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  if (std::system(("mount -t tmpfs -o size=1m tmpfs '" + dir + "' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "mount -t tmpfs failed (no CAP_SYS_ADMIN?)";
  {
    auto tier = SsdSwap::create(dir, "r0");
    ASSERT_TRUE(tier.ok()) << tier.status();
    Tensor small = random_tensor(1000, 1), big = random_tensor(1 << 20, 2);  // 4 KB and 4 MiB
    const uint64_t a = *(*tier)->write(small);
    const uint64_t b = *(*tier)->write(big);
    absl::Status st = (*tier)->wait(b);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st;
    EXPECT_NE(st.message().find((*tier)->path()), std::string::npos) << st;
    Tensor back = *Tensor::empty({1000}, DType::kF32, MemCategory::kActivations);
    ASSERT_TRUE((*tier)->read(a, back).ok());
    ASSERT_TRUE((*tier)->wait(a).ok());
    EXPECT_EQ(std::memcmp(back.raw(), small.raw(), 4000), 0);
  }
  EXPECT_EQ(std::system(("umount '" + dir + "'").c_str()), 0);
}

}  // namespace
}  // namespace memtrain::offload
