#include "checkpoint/shm_keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {

// One request per message (SOCK_SEQPACKET keeps the boundaries); the reply carries the object's descriptor as
// SCM_RIGHTS ancillary data for get and open.
enum Op : int32_t { kGet = 1, kOpen = 2, kDrop = 3, kStop = 4 };
struct Request {
  int32_t op;
  int32_t unused;
  int64_t bytes;
  char name[208];  // NUL-terminated
};
struct Reply {
  int32_t err;  // 0 or an errno value
  int32_t unused;
  int64_t bytes;  // the object's size
};

absl::StatusOr<sockaddr_un> address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return absl::InvalidArgumentError(absl::StrCat("snapshot keeper socket path '", path, "' is empty or longer than ",
                                                   sizeof a.sun_path - 1, " bytes"));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

absl::Status from_errno(int err, const std::string& what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == ENOSPC || err == ENOMEM) return absl::ResourceExhaustedError(msg);
  if (err == ECONNREFUSED || err == ECONNRESET || err == EPIPE) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Sends `reply`, with descriptor `fd` attached when >= 0. MSG_NOSIGNAL: a client gone meanwhile is no SIGPIPE.
void send_reply(int client, const Reply& reply, int fd) {
  iovec iov{const_cast<Reply*>(&reply), sizeof reply};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  (void)sendmsg(client, &msg, MSG_NOSIGNAL);
}

class Keeper {
 public:
  ~Keeper() {
    for (auto& [name, o] : objects_) ::close(o.fd);
  }
  // Answers one request; false for stop.
  bool serve(int client, const Request& rq) {
    const std::string name(rq.name, strnlen(rq.name, sizeof rq.name));
    if (rq.op == kStop) {
      send_reply(client, Reply{0, 0, 0}, -1);
      return false;
    }
    auto it = objects_.find(name);
    if (rq.op == kDrop) {
      if (it != objects_.end()) {
        ::close(it->second.fd);
        objects_.erase(it);
      }
      send_reply(client, Reply{0, 0, 0}, -1);
      return true;
    }
    if (it != objects_.end() && (rq.op == kOpen || it->second.bytes == rq.bytes)) {
      send_reply(client, Reply{0, 0, it->second.bytes}, it->second.fd);
      return true;
    }
    if (rq.op != kGet || name.empty() || rq.bytes < 0) {
      send_reply(client, Reply{rq.op == kOpen ? ENOENT : EINVAL, 0, 0}, -1);
      return true;
    }
    if (it != objects_.end()) {  // another size: the state's shape changed, the old bytes mean nothing
      ::close(it->second.fd);
      objects_.erase(it);
    }
    const int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
    // fallocate, not ftruncate: the pages are reserved now, so memory running out fails here, not with SIGBUS.
    if (fd < 0 || (rq.bytes > 0 && fallocate(fd, 0, 0, rq.bytes) != 0)) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      send_reply(client, Reply{err, 0, 0}, -1);
      return true;
    }
    objects_[name] = {fd, rq.bytes};
    send_reply(client, Reply{0, 0, rq.bytes}, fd);
    return true;
  }
  bool empty() const { return objects_.empty(); }

 private:
  struct Object {
    int fd;
    int64_t bytes;
  };
  std::map<std::string, Object> objects_;
};

}  // namespace

absl::Status run_keeper(const std::string& socket_path, double idle_timeout_s, const std::function<void()>& ready) {
  MEMTRAIN_ASSIGN_OR_RETURN(const sockaddr_un addr, address(socket_path));
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  if (auto other = KeeperClient::connect(socket_path); other.ok())
    return absl::AlreadyExistsError(absl::StrCat("a snapshot keeper already serves ", socket_path));
  ::unlink(socket_path.c_str());  // a dead keeper's socket
  const int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (listener < 0) return from_errno(errno, "snapshot keeper socket");
  const mode_t old_mask = umask(077);  // the socket file is 0600: only the job's user reaches the snapshots
  const bool bound = bind(listener, sa, sizeof addr) == 0 && chmod(socket_path.c_str(), 0600) == 0 &&
                     listen(listener, 128) == 0;
  const int err = errno;
  umask(old_mask);
  if (!bound) {
    ::close(listener);
    return from_errno(err, absl::StrCat("snapshot keeper socket ", socket_path));
  }
  if (ready) ready();
  Keeper keeper;
  std::vector<int> clients;
  bool had_client = false, running = true;
  auto idle_since = std::chrono::steady_clock::now();
  while (running) {
    std::vector<pollfd> fds{{listener, POLLIN, 0}};
    for (int c : clients) fds.push_back({c, POLLIN, 0});
    if (poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) break;
    for (size_t i = 1; i < fds.size() && running; ++i) {
      if (fds[i].revents == 0) continue;
      Request rq{};
      if (recv(fds[i].fd, &rq, sizeof rq, 0) == static_cast<ssize_t>(sizeof rq)) {
        running = keeper.serve(fds[i].fd, rq);
      } else {  // the rank went away (or spoke nonsense)
        ::close(fds[i].fd);
        clients.erase(std::find(clients.begin(), clients.end(), fds[i].fd));
      }
    }
    if (fds[0].revents & POLLIN) {
      const int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) clients.push_back(c);
      had_client = had_client || c >= 0;
    }
    if (!clients.empty()) idle_since = std::chrono::steady_clock::now();
    const double idle = seconds_since(idle_since);
    // Held nothing for a second after its ranks left: the job ended and removed its snapshots.
    if (idle > idle_timeout_s || (had_client && keeper.empty() && idle > 1.0)) running = false;
  }
  ::close(listener);
  ::unlink(socket_path.c_str());
  for (int c : clients) ::close(c);
  return absl::OkStatus();
}

absl::Status spawn_keeper(const std::string& binary, const std::string& socket_path, double idle_timeout_s) {
  const std::string timeout = absl::StrCat(idle_timeout_s);
  const char* argv[] = {binary.c_str(), "keeper", "--socket", socket_path.c_str(), "--idle-timeout", timeout.c_str(),
                        nullptr};
  // Twice forked, the keeper's parent is gone at once, so it is nobody's child to wait for or to take down; only
  // async-signal-safe calls between fork and exec (the caller has threads).
  const pid_t child = fork();
  if (child < 0) return from_errno(errno, "starting the snapshot keeper");
  if (child == 0) {
    setsid();
    if (fork() != 0) _exit(0);
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
    syscall(SYS_close_range, 3U, ~0U, 0U);  // the launcher's pipes would otherwise wait for the keeper's end
    execv(binary.c_str(), const_cast<char* const*>(argv));
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KeeperClient>> KeeperClient::connect(const std::string& socket_path) {
  MEMTRAIN_ASSIGN_OR_RETURN(const sockaddr_un addr, address(socket_path));
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return from_errno(errno, "snapshot keeper socket");
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("no snapshot keeper at ", socket_path, ": ", std::strerror(err)));
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
  return std::unique_ptr<KeeperClient>(new KeeperClient(fd, cred.pid));
}

KeeperClient::~KeeperClient() { ::close(fd_); }

absl::StatusOr<ShmSegment> KeeperClient::call(int op, const std::string& name, int64_t bytes) {
  Request rq{};
  rq.op = op;
  rq.bytes = bytes;
  if (name.size() >= sizeof rq.name) return absl::InvalidArgumentError(absl::StrCat("object name too long: ", name));
  std::memcpy(rq.name, name.data(), name.size());
  const std::string what = absl::StrCat("snapshot keeper (pid ", pid_, "), object ", name);
  if (send(fd_, &rq, sizeof rq, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof rq)) return from_errno(errno, what);
  Reply reply{};
  iovec iov{&reply, sizeof reply};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  int fd = -1;
  if (cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr && c->cmsg_type == SCM_RIGHTS)
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (n != static_cast<ssize_t>(sizeof reply)) {
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat(what, ": the keeper went away"));
  }
  if (reply.err != 0) {
    if (fd >= 0) ::close(fd);
    return from_errno(reply.err, what);
  }
  if (op != kGet && op != kOpen) return ShmSegment();
  if (fd < 0) return absl::InternalError(absl::StrCat(what, ": no descriptor in the reply"));
  return ShmSegment::map(name, fd, reply.bytes);
}

absl::StatusOr<ShmSegment> KeeperClient::get(const std::string& name, int64_t bytes) { return call(kGet, name, bytes); }
absl::StatusOr<ShmSegment> KeeperClient::open(const std::string& name) { return call(kOpen, name, 0); }
void KeeperClient::drop(const std::string& name) { call(kDrop, name, 0).IgnoreError(); }
absl::Status KeeperClient::stop() { return call(kStop, "", 0).status(); }

}  // namespace memtrain::checkpoint
