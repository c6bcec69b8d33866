// Status helpers and CHECK macros shared by every module: fallible calls return absl::Status, bugs abort.
#pragma once

#include <cstdio>
#include <cstdlib>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memtrain {

// InvalidArgument("optim.lr: must be > 0, got -1"): the binary prints it after "error: " and exits with 2.
absl::Status config_error(absl::string_view key, absl::string_view why);

// Prepends context ("while loading data/x.bin") to a non-OK status, keeping its code.
absl::Status annotate(const absl::Status& status, absl::string_view context);

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace memtrain

#define MEMTRAIN_CONCAT_INNER(a, b) a##b
#define MEMTRAIN_CONCAT(a, b) MEMTRAIN_CONCAT_INNER(a, b)

// Aborts with file:line; for invariants that only a bug can break.
#define MEMTRAIN_CHECK(cond)                                                     \
  do {                                                                           \
    if (!(cond)) ::memtrain::check_failed(__FILE__, __LINE__, #cond, {});        \
  } while (0)
#define MEMTRAIN_CHECK_MSG(cond, msg)                                            \
  do {                                                                           \
    if (!(cond)) ::memtrain::check_failed(__FILE__, __LINE__, #cond, (msg));     \
  } while (0)
#define MEMTRAIN_CHECK_OK(expr)                                                  \
  do {                                                                           \
    const ::absl::Status _st = (expr);                                           \
    if (!_st.ok()) ::memtrain::check_failed(__FILE__, __LINE__, #expr, _st.ToString()); \
  } while (0)

#define MEMTRAIN_RETURN_IF_ERROR(expr)            \
  do {                                            \
    ::absl::Status _st = (expr);                  \
    if (!_st.ok()) return _st;                    \
  } while (0)

#define MEMTRAIN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()
#define MEMTRAIN_ASSIGN_OR_RETURN(lhs, expr) \
  MEMTRAIN_ASSIGN_OR_RETURN_IMPL(MEMTRAIN_CONCAT(_statusor_, __LINE__), lhs, expr)
