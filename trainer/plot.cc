#include "trainer/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

constexpr Rgb kWhite{255, 255, 255}, kInk{40, 40, 40}, kGrid{225, 225, 225};

// Tick positions 1, 2 or 5 x 10^k apart, about `want` of them inside [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int want) {
  const double raw = (hi - lo) / want;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

// A tick label: as many decimals as the spacing needs; thousands and millions as k and M.
std::string tick_label(double v, double spacing) {
  double scale = 1;
  const char* suffix = "";
  if (spacing >= 1e6) scale = 1e6, suffix = "M";
  else if (spacing >= 1e3) scale = 1e3, suffix = "k";
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(spacing / scale) + 1e-9)));
  return absl::StrFormat("%.*f%s", decimals, v / scale, suffix);
}

// The range of `values` with 5% room above and below (a flat series gets +-1 or +-5%).
std::pair<double, double> padded_range(const std::vector<double>& a, const std::vector<double>& b = {}) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* v : {&a, &b})
    for (double x : *v) lo = std::min(lo, x), hi = std::max(hi, x);
  if (hi - lo <= 0) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.05;
    return {lo - pad, hi + pad};
  }
  const double pad = (hi - lo) * 0.05;
  return {lo - pad, hi + pad};
}

void draw_panel(Canvas& c, const PlotPanel& p, const std::string& title, int scale, bool step_labels) {
  const int th = Canvas::text_height(scale);
  const std::vector<double> yt = nice_ticks(p.y_lo, p.y_hi, 5), xt = nice_ticks(p.x_lo, p.x_hi, 6);
  for (double y : yt) {
    const int py = static_cast<int>(std::lround(p.py(y)));
    c.line(p.left, py, p.right, py, kGrid);
    const std::string label = tick_label(y, yt.size() > 1 ? yt[1] - yt[0] : 1);
    c.text(p.left - 6 * scale - Canvas::text_width(label, scale), py - th / 2, label, kInk, scale);
  }
  for (double x : xt) {
    const int px = static_cast<int>(std::lround(p.px(x)));
    c.line(px, p.top, px, p.bottom, kGrid);
    if (!step_labels) continue;
    const std::string label = tick_label(x, xt.size() > 1 ? xt[1] - xt[0] : 1);
    c.text(px - Canvas::text_width(label, scale) / 2, p.bottom + 4 * scale, label, kInk, scale);
  }
  c.rect(p.left, p.top, p.right, p.bottom, kInk);
  c.text(p.left, p.top - th - 4 * scale, title, kInk, scale);
}

void polyline(Canvas& c, const PlotPanel& p, const std::vector<double>& xs, const std::vector<double>& ys, Rgb color,
              int thickness) {
  for (size_t i = 0; i < xs.size(); ++i) {
    const size_t j = i == 0 ? 0 : i - 1;
    c.line(p.px(xs[j]), p.py(ys[j]), p.px(xs[i]), p.py(ys[i]), color, thickness);
  }
}

}  // namespace

absl::StatusOr<MetricsSeries> read_metrics_series(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file (is the directory a run's output.dir?)"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, read_file(path));
  MetricsSeries s;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": not a metrics line"));
    }
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number()) {
      s.steps.push_back(step);
      s.losses.push_back(j["loss"].get<double>());
      s.tokens_per_s.push_back(j.contains("tokens_per_s") && j["tokens_per_s"].is_number() ? j["tokens_per_s"].get<double>() : 0);
    } else if (j.contains("val_loss") && j["val_loss"].is_number()) {
      s.val_steps.push_back(step);
      s.val_losses.push_back(j["val_loss"].get<double>());
    }
  }
  if (s.steps.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no training step logged yet"));
  return s;
}

absl::StatusOr<PlotLayout> plot_layout(const MetricsSeries& s, int width, int height) {
  for (const auto& [flag, v] : {std::pair{"--width", width}, std::pair{"--height", height}}) {
    if (v < kMinPlotSide || v > kMaxPlotSide) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": ", v, " pixels; between ", kMinPlotSide, " and ", kMaxPlotSide));
    }
  }
  PlotLayout l;
  l.width = width;
  l.height = height;
  l.text_scale = std::min(width, height) >= 600 ? 2 : 1;
  const int u = 6 * l.text_scale;  // one character cell
  const int left = 9 * u, right = width - 3 * u;
  const int title = Canvas::text_height(l.text_scale) + 4 * l.text_scale + u;  // a panel's title and its gap
  const int axis = 2 * Canvas::text_height(l.text_scale) + 14 * l.text_scale;  // the step labels and "STEP"
  const int panel = (height - 2 * title - axis - u) / 2;
  l.loss = {left, title, right, title + panel};
  l.throughput = {left, l.loss.bottom + u + title, right, l.loss.bottom + u + title + panel};
  const double x_lo = std::min(s.steps.front(), s.val_steps.empty() ? s.steps.front() : s.val_steps.front());
  const double x_hi = std::max(s.steps.back(), s.val_steps.empty() ? s.steps.back() : s.val_steps.back());
  for (PlotPanel* p : {&l.loss, &l.throughput}) {
    p->x_lo = x_hi > x_lo ? x_lo : x_lo - 1;
    p->x_hi = x_hi > x_lo ? x_hi : x_hi + 1;
  }
  std::tie(l.loss.y_lo, l.loss.y_hi) = padded_range(s.losses, s.val_losses);
  std::tie(l.throughput.y_lo, l.throughput.y_hi) = padded_range(s.tokens_per_s);
  return l;
}

Canvas draw_plot(const MetricsSeries& s, const PlotLayout& l) {
  Canvas c(l.width, l.height, kWhite);
  const int scale = l.text_scale;
  draw_panel(c, l.loss, "LOSS", scale, /*step_labels=*/false);
  draw_panel(c, l.throughput, "TOKENS/S", scale, /*step_labels=*/true);
  // The legend, right of the loss title: a colour swatch before each name.
  int x = l.loss.left + Canvas::text_width("LOSS  ", scale);
  const int y = l.loss.top - Canvas::text_height(scale) - 4 * scale;
  for (const auto& [name, color] : {std::pair{"TRAIN", kLossColor}, std::pair{"VAL", kValLossColor}}) {
    if (std::string(name) == "VAL" && s.val_steps.empty()) break;
    c.fill_rect(x, y + scale, x + 4 * scale, y + 5 * scale, color);
    c.text(x + 7 * scale, y, name, kInk, scale);
    x += 7 * scale + Canvas::text_width(std::string(name) + "  ", scale);
  }
  const std::string step_label = "STEP";
  c.text((l.throughput.left + l.throughput.right - Canvas::text_width(step_label, scale)) / 2,
         l.height - Canvas::text_height(scale) - 3 * scale, step_label, kInk, scale);
  polyline(c, l.loss, s.steps, s.losses, kLossColor, 2);
  polyline(c, l.loss, s.val_steps, s.val_losses, kValLossColor, 1);
  for (size_t i = 0; i < s.val_steps.size(); ++i) {  // each evaluation as a dot
    const int px = static_cast<int>(std::lround(l.loss.px(s.val_steps[i])));
    const int py = static_cast<int>(std::lround(l.loss.py(s.val_losses[i])));
    c.fill_rect(px - 2 * scale, py - 2 * scale, px + 2 * scale, py + 2 * scale, kValLossColor);
  }
  polyline(c, l.throughput, s.steps, s.tokens_per_s, kThroughputColor, 2);
  return c;
}

absl::StatusOr<std::string> plot_run(const std::string& run_dir, std::string out, int width, int height) {
  MEMTRAIN_ASSIGN_OR_RETURN(MetricsSeries s, read_metrics_series((std::filesystem::path(run_dir) / "metrics.jsonl").string()));
  MEMTRAIN_ASSIGN_OR_RETURN(PlotLayout layout, plot_layout(s, width, height));
  if (out.empty()) out = (std::filesystem::path(run_dir) / "metrics.png").string();
  MEMTRAIN_RETURN_IF_ERROR(draw_plot(s, layout).write_png(out));
  return out;
}

}  // namespace memtrain::trainer
