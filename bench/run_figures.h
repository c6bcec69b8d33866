// What the benchmarks read back from a run's metrics.jsonl: the median step time over all logged steps but the
// first (it pays for first-touch allocation), the last step's line (its `mem`) and the largest sum of category
// peaks over the logged steps.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace memtrain::bench {

struct RunFigures {
  double median_step_ms = 0;
  nlohmann::json last;  // the last step's line
  int64_t peak_sum = 0;
};

inline RunFigures read_run_figures(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  std::vector<double> ms;
  RunFigures f;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (!j.contains("step_ms")) continue;
    if (j["step"].get<int64_t>() > 1) ms.push_back(j["step_ms"].get<double>());
    int64_t sum = 0;
    for (const auto& [k, v] : j["mem"].items()) sum += v.get<int64_t>();
    f.peak_sum = std::max(f.peak_sum, sum);
    f.last = j;
  }
  std::sort(ms.begin(), ms.end());
  if (!ms.empty()) f.median_step_ms = ms[ms.size() / 2];
  return f;
}

}  // namespace memtrain::bench
