// `memtrain plot RUN_DIR`: a run's metrics.jsonl drawn into a PNG: the training loss (and the validation loss where
// the run evaluated) above, the throughput in tokens/s below, both against the step.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/png_canvas.h"

namespace memtrain::trainer {

// The curves of a metrics.jsonl: one entry per logged training step, one per evaluation.
struct MetricsSeries {
  std::vector<double> steps, losses, tokens_per_s;
  std::vector<double> val_steps, val_losses;
};
// NotFound when the file is missing, InvalidArgument when it logs no training step or a line is not JSON.
absl::StatusOr<MetricsSeries> read_metrics_series(const std::string& path);

// A panel: its plot area in pixels (edges included) and the data ranges its axes span.
struct PlotPanel {
  int left = 0, top = 0, right = 0, bottom = 0;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * (right - left); }
  double py(double y) const { return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top); }
};
struct PlotLayout {
  int width = 0, height = 0;
  int text_scale = 1;
  PlotPanel loss, throughput;
};
// Sizes outside [kMinPlotSide, kMaxPlotSide] are an InvalidArgument naming the flag.
inline constexpr int kMinPlotSide = 200, kMaxPlotSide = 10000;
absl::StatusOr<PlotLayout> plot_layout(const MetricsSeries& s, int width, int height);

inline constexpr Rgb kLossColor{31, 119, 180}, kValLossColor{214, 39, 40}, kThroughputColor{44, 160, 44};
Canvas draw_plot(const MetricsSeries& s, const PlotLayout& layout);

// Reads run_dir/metrics.jsonl and writes the plot to `out` (empty: run_dir/metrics.png); returns the path.
absl::StatusOr<std::string> plot_run(const std::string& run_dir, std::string out, int width, int height);

}  // namespace memtrain::trainer
