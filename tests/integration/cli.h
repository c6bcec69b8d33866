// Runs the memtrain binary as a user would and captures its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>

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

// Runs the shell `command` from the source root (so configs/ paths resolve), its output captured in scratch_dir.
inline CliResult run_shell(const std::string& command, const std::string& scratch_dir) {
  const std::string out = scratch_dir + "/cli.out", err = scratch_dir + "/cli.err";
  const std::string cmd =
      absl::StrCat("cd '", MEMTRAIN_SOURCE_DIR, "' && ", command, " >'", out, "' 2>'", err, "'");
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

// mpirun as the mpi tests run it; `apps` are its application contexts ("-np 2 BINARY ARGS", joined by " : ").
inline CliResult run_mpirun(const std::string& apps, const std::string& scratch_dir) {
  return run_shell("OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe "
                   "--mca btl self,vader " + apps, scratch_dir);
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

}  // namespace memtrain::testing
