// The snapshot keeper: an object a client wrote outlives the client (killed with SIGKILL) and is handed to the
// next one; it dies with the keeper (kill -9); get with another size replaces it, drop forgets it; the socket is
// 0600 and a second keeper on it is refused; the keeper exits when asked, when idle too long, and when its clients
// left it holding nothing.
#include "checkpoint/shm_keeper.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

namespace memtrain::checkpoint {
namespace {

std::string socket_path(const std::string& what) {
  return "/dev/shm/memtrain-test." + what + "." + std::to_string(getpid()) + ".keeper";
}

std::unique_ptr<KeeperClient> connect_when_up(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    if (auto c = KeeperClient::connect(path); c.ok()) return std::move(*c);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return nullptr;
}

// A keeper in a thread of this process; stopped (if still running) and joined at the end.
class ThreadKeeper {
 public:
  ThreadKeeper(const std::string& path, double idle_s)
      : thread_([this, path, idle_s] { status_ = run_keeper(path, idle_s); }), path_(path) {}
  ~ThreadKeeper() {
    if (!thread_.joinable()) return;
    if (auto c = KeeperClient::connect(path_); c.ok()) (*c)->stop().IgnoreError();
    thread_.join();
  }
  void join() { thread_.join(); }
  absl::Status status() const { return status_; }

 private:
  absl::Status status_;
  std::thread thread_;
  std::string path_;
};

TEST(ShmKeeper, AnObjectOutlivesItsWriterAndDiesWithTheKeeper) {
  const std::string path = socket_path("kill");
  const pid_t keeper = fork();  // the keeper as its own process, as `memtrain keeper` runs it
  ASSERT_GE(keeper, 0);
  if (keeper == 0) _exit(run_keeper(path, 60).ok() ? 0 : 1);
  std::unique_ptr<KeeperClient> client = connect_when_up(path);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->keeper_pid(), keeper);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const pid_t writer = fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    auto c = KeeperClient::connect(path);
    if (!c.ok()) _exit(1);
    auto s = (*c)->get("memtrain.t.d0.0", 1 << 20);
    if (!s.ok()) _exit(1);
    std::memset(s->data(), 0x5A, 1 << 20);
    s->data()[12345] = 7;
    raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(waitpid(writer, &status, 0), writer);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer could not get its object";
  auto s = client->open("memtrain.t.d0.0");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->bytes(), 1 << 20);
  EXPECT_EQ(s->data()[12345], 7);
  EXPECT_EQ(s->data()[0], 0x5A);

  ASSERT_EQ(kill(keeper, SIGKILL), 0);
  ASSERT_EQ(waitpid(keeper, &status, 0), keeper);
  EXPECT_EQ(s->data()[12345], 7) << "a mapping stays valid after the keeper is gone";
  EXPECT_FALSE(client->open("memtrain.t.d0.0").ok());
  client.reset();
  EXPECT_FALSE(KeeperClient::connect(path).ok());
  ThreadKeeper next(path, 60);  // replaces the dead keeper's socket; the memory went with it
  client = connect_when_up(path);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->open("memtrain.t.d0.0").status().code(), absl::StatusCode::kNotFound);
}

TEST(ShmKeeper, GetKeepsOrReplacesByTheSizeAndDropForgets) {
  const std::string path = socket_path("get");
  ThreadKeeper keeper(path, 60);
  std::unique_ptr<KeeperClient> a = connect_when_up(path), b = connect_when_up(path);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  {
    auto s = a->get("x", 4096);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->data()[100], 0);
    s->data()[100] = 42;
  }
  auto same = b->get("x", 4096);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->data()[100], 42) << "another client sees the same object";
  auto bigger = b->get("x", 8192);
  ASSERT_TRUE(bigger.ok()) << bigger.status();
  EXPECT_EQ(bigger->bytes(), 8192);
  EXPECT_EQ(bigger->data()[100], 0) << "another size is a new object";
  EXPECT_EQ(same->data()[100], 42) << "the old mapping stays valid";
  a->drop("x");
  EXPECT_EQ(b->open("x").status().code(), absl::StatusCode::kNotFound);
  a->drop("never there");  // no error
  EXPECT_EQ(run_keeper(path, 1).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(a->stop().ok());
  keeper.join();
  EXPECT_TRUE(keeper.status().ok()) << keeper.status();
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket is removed at exit";
  EXPECT_FALSE(b->get("y", 10).ok()) << "the keeper is gone";
}

TEST(ShmKeeper, ExitsWhenIdleTooLongOrLeftHoldingNothing) {
  using clock = std::chrono::steady_clock;
  const std::string path = socket_path("idle");
  auto start = clock::now();
  EXPECT_TRUE(run_keeper(path, 0.3).ok());  // nobody ever came
  EXPECT_LT(clock::now() - start, std::chrono::seconds(5));

  ThreadKeeper keeper(path, 600);
  {
    std::unique_ptr<KeeperClient> c = connect_when_up(path);
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->get("z", 64).ok());
    c->drop("z");
  }
  start = clock::now();
  keeper.join();  // its client left, it holds nothing: gone about a second later, not after 600 s
  EXPECT_LT(clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace memtrain::checkpoint
