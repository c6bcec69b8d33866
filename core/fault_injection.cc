// MEMTRAIN_FAULT parsing and the slow path of MEMTRAIN_FAULT_POINT: hit counting, listing and raise(SIGKILL).
#include "core/fault_injection.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/strings/numbers.h"

namespace memtrain::fault {

std::optional<Spec> parse_spec(const std::string& value) {
  Spec spec;
  if (value == "list") {
    spec.mode = Spec::Mode::kList;
    return spec;
  }
  if (value == "count") {
    spec.mode = Spec::Mode::kCount;
    return spec;
  }
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  int64_t hit = 0;
  const std::string digits = value.substr(colon + 1);
  // SimpleAtoi accepts a sign and surrounding spaces; a hit count is plain digits.
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  if (!absl::SimpleAtoi(digits, &hit) || hit < 1) return std::nullopt;
  spec.name = value.substr(0, colon);
  spec.hit = hit;
  return spec;
}

namespace internal {

std::atomic<uint8_t> g_state{kUnread};

namespace {

// Everything the points share, built once by the first point reached (a function-local static, so two threads
// reaching points at once both wait for one reading of the environment).
struct State {
  Spec spec;
  std::atomic<int64_t> target_hits{0};  // kKill: times spec.name was reached
  std::mutex mu;                        // kList / kCount: guards hits
  std::map<std::string, int64_t> hits;
};

State* read_environment() {
  const char* env = std::getenv("MEMTRAIN_FAULT");
  if (env == nullptr || *env == '\0') {
    g_state.store(kOff, std::memory_order_relaxed);
    return nullptr;
  }
  const std::optional<Spec> spec = parse_spec(env);
  if (!spec) {
    std::fprintf(stderr, "MEMTRAIN_FAULT=%s: expected NAME:N (N >= 1, kill at the N-th time point NAME is "
                         "reached), \"list\" or \"count\"\n", env);
    std::_Exit(2);
  }
  auto* state = new State;  // lives for the whole process, like the points that use it
  state->spec = *spec;
  g_state.store(kOn, std::memory_order_relaxed);
  return state;
}

State* state() {
  static State* const s = read_environment();
  return s;
}

}  // namespace

void reached(const char* name) {
  State* s = state();
  if (s == nullptr) return;  // the first point reached with MEMTRAIN_FAULT unset
  switch (s->spec.mode) {
    case Spec::Mode::kKill: {
      if (std::strcmp(name, s->spec.name.c_str()) != 0) return;
      const int64_t k = s->target_hits.fetch_add(1, std::memory_order_relaxed) + 1;
      if (k != s->spec.hit) return;
      std::fprintf(stderr, "fault injection: SIGKILL at %s (hit %lld)\n", name, static_cast<long long>(k));
      std::fflush(stderr);
      std::raise(SIGKILL);  // kills every thread; never returns
      std::abort();         // unreachable unless SIGKILL could be blocked
    }
    case Spec::Mode::kList:
    case Spec::Mode::kCount: {
      std::lock_guard<std::mutex> lock(s->mu);
      const int64_t k = ++s->hits[name];
      if (s->spec.mode == Spec::Mode::kCount) {
        std::fprintf(stderr, "fault point: %s #%lld\n", name, static_cast<long long>(k));
      } else if (k == 1) {
        std::fprintf(stderr, "fault point: %s\n", name);
      }
      return;
    }
  }
}

}  // namespace internal
}  // namespace memtrain::fault
