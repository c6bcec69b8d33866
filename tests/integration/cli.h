// Runs the memtrain binary as a user would and captures its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace memtrain::testing {

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The shell prefix of run_shell and start_shell: the source root (so configs/ and launch/ paths resolve), and the
// launch scripts pointed at this build's binary (they would take build/memtrain otherwise, which is another build
// when the tests of build-asan run; sbatch passes the variable on to the job).
inline std::string in_source_root() {
  return absl::StrCat("cd '", MEMTRAIN_SOURCE_DIR, "' && export MEMTRAIN_BINARY='", MEMTRAIN_BINARY_DIR,
                      "/memtrain' && ");
}

// Runs the shell `command` from the source root, its output captured in scratch_dir.
inline CliResult run_shell(const std::string& command, const std::string& scratch_dir) {
  const std::string out = scratch_dir + "/cli.out", err = scratch_dir + "/cli.err";
  const std::string cmd = absl::StrCat(in_source_root(), command, " >'", out, "' 2>'", err, "'");
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// `args` is appended to the binary's path as shell words. `env` ("NAME=value ...") is set for the binary only.
inline CliResult run_memtrain(const std::string& args, const std::string& scratch_dir, const std::string& env = "") {
  return run_shell(absl::StrCat(env.empty() ? "" : "env " + env + " ", "'", MEMTRAIN_BINARY_DIR, "/memtrain' ", args),
                   scratch_dir);
}

// mpirun as the mpi tests run it, to be followed by its application contexts ("-np 2 BINARY ARGS", joined by
// " : "). Through env, so that start_shell can exec it too.
inline constexpr char kMpirun[] =
    "env OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe --mca btl self,vader ";
inline CliResult run_mpirun(const std::string& apps, const std::string& scratch_dir) {
  return run_shell(kMpirun + apps, scratch_dir);
}

// Starts `command` as run_shell does without waiting for it; returns its pid (the shell execs the command, so it
// is the program's own). Its output goes to scratch_dir/cli.out and cli.err; finish() collects it.
inline pid_t start_shell(const std::string& command, const std::string& scratch_dir) {
  const std::string cmd = absl::StrCat(in_source_root(), "exec ", command, " >'", scratch_dir,
                                       "/cli.out' 2>'", scratch_dir, "/cli.err'");
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}
inline CliResult finish(pid_t pid, const std::string& scratch_dir) {
  int status = 0;
  CliResult r;
  if (waitpid(pid, &status, 0) == pid) r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(scratch_dir + "/cli.out");
  r.err = slurp(scratch_dir + "/cli.err");
  return r;
}

// The training losses a run's metrics.jsonl logged, in order (the lines with a "loss").
inline std::vector<double> logged_losses(const std::string& metrics_path) {
  std::vector<double> l;
  std::ifstream f(metrics_path);
  for (std::string line; std::getline(f, line);) {
    if (line.empty()) continue;
    const auto m = nlohmann::json::parse(line);
    if (m.contains("loss")) l.push_back(m["loss"].get<double>());
  }
  return l;
}

// Waits up to `timeout_s` for a run's metrics.jsonl to log the loss of step `step` (complete lines only, so it can
// be read while the run writes it); false when it did not.
inline bool wait_for_step(const std::string& metrics_path, int64_t step, double timeout_s) {
  for (double waited = 0; waited < timeout_s; waited += 0.01) {
    std::ifstream f(metrics_path);
    for (std::string line; std::getline(f, line) && !f.eof();) {
      const auto m = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (m.is_object() && m.contains("loss") && m["step"].get<int64_t>() >= step) return true;
    }
    usleep(10000);
  }
  return false;
}

}  // namespace memtrain::testing
