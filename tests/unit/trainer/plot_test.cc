// The PNG canvas and `memtrain plot`'s drawing: images read back with libpng's own reader equal what was drawn;
// text uses the 5 x 7 font (upper-cased, '?' for what it lacks); every logged point lands on its curve's colour
// at the pixel the layout maps it to; metrics files that cannot be plotted are errors that say why.
#include "trainer/plot.h"

#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "trainer/png_canvas.h"

namespace memtrain::trainer {
namespace {

// Decodes `path` with libpng into a canvas (black where nothing was read).
Canvas read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&image, path.c_str())) << image.message;
  image.format = PNG_FORMAT_RGB;
  std::vector<Rgb> pixels(PNG_IMAGE_SIZE(image) / 3);
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr)) << image.message;
  Canvas c(static_cast<int>(image.width), static_cast<int>(image.height), Rgb{});
  for (int y = 0; y < c.height(); ++y)
    for (int x = 0; x < c.width(); ++x) c.set(x, y, pixels[static_cast<size_t>(y) * c.width() + x]);
  return c;
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name + std::to_string(getpid()); }

TEST(PngCanvas, WhatIsWrittenReadsBackPixelForPixel) {
  Canvas c(37, 23, Rgb{250, 240, 230});
  c.line(0, 0, 36, 22, Rgb{200, 10, 20}, 2);
  c.fill_rect(30, 2, 34, 5, Rgb{1, 2, 3});
  c.text(2, 12, "Ab9", Rgb{0, 128, 255});
  const std::string path = temp_path("canvas.png");
  ASSERT_TRUE(c.write_png(path).ok());
  const Canvas back = read_png(path);
  ASSERT_EQ(back.width(), 37);
  ASSERT_EQ(back.height(), 23);
  for (int y = 0; y < 23; ++y)
    for (int x = 0; x < 37; ++x) ASSERT_EQ(back.at(x, y), c.at(x, y)) << x << "," << y;
  std::filesystem::remove(path);
}

TEST(PngCanvas, TextUsesTheFiveBySevenFont) {
  auto ink = [](const std::string& s) {
    Canvas c(Canvas::text_width(s) + 2, 9, Rgb{});
    c.text(1, 1, s, Rgb{255, 255, 255});
    std::string art;
    for (int y = 1; y < 8; ++y)
      for (int x = 1; x < 6; ++x) art += c.at(x, y).r ? '#' : '.';
    return art;
  };
  EXPECT_EQ(ink("1"), "..#.." ".##.." "..#.." "..#.." "..#.." "..#.." ".###.");
  EXPECT_EQ(ink("L"), "#...." "#...." "#...." "#...." "#...." "#...." "#####");
  EXPECT_EQ(ink("k"), ink("K"));
  EXPECT_EQ(ink("~"), ink("?"));
  EXPECT_EQ(ink(" "), std::string(35, '.'));
  EXPECT_EQ(Canvas::text_width("AB"), 11);  // 5 + a column of space + 5
}

MetricsSeries series() {
  MetricsSeries s;
  for (int i = 1; i <= 40; ++i) {
    s.steps.push_back(5.0 * i);
    s.losses.push_back(5.0 / (1 + 0.05 * i));
    s.tokens_per_s.push_back(40000 + 300.0 * (i % 7));
  }
  for (int i = 1; i <= 4; ++i) {
    s.val_steps.push_back(50.0 * i);
    s.val_losses.push_back(5.2 / (1 + 0.5 * i));
  }
  return s;
}

TEST(Plot, EveryPointLandsOnItsCurveWhereTheLayoutMapsIt) {
  const MetricsSeries s = series();
  for (const auto& [w, h] : {std::pair{1000, 700}, std::pair{320, 240}}) {
    auto layout = plot_layout(s, w, h);
    ASSERT_TRUE(layout.ok()) << layout.status();
    const Canvas c = draw_plot(s, *layout);
    ASSERT_EQ(c.width(), w);
    ASSERT_EQ(c.height(), h);
    for (const PlotPanel* p : {&layout->loss, &layout->throughput}) {
      EXPECT_TRUE(p->left > 0 && p->right < w && p->top > 0 && p->bottom < h);
      EXPECT_GT(p->right - p->left, w / 2);
      EXPECT_GT(p->bottom - p->top, h / 5);
    }
    EXPECT_LT(layout->loss.bottom, layout->throughput.top);
    auto at = [&](const PlotPanel& p, double x, double y) {
      return c.at(static_cast<int>(std::lround(p.px(x))), static_cast<int>(std::lround(p.py(y))));
    };
    for (size_t i = 0; i < s.steps.size(); ++i) {
      EXPECT_EQ(at(layout->throughput, s.steps[i], s.tokens_per_s[i]), kThroughputColor) << "step " << s.steps[i];
      // Evaluations are drawn over the training curve: skip the points under their dots.
      const bool under_dot = std::fmod(s.steps[i], 50.0) == 0;
      if (!under_dot) {
        EXPECT_EQ(at(layout->loss, s.steps[i], s.losses[i]), kLossColor) << "step " << s.steps[i];
      }
    }
    for (size_t i = 0; i < s.val_steps.size(); ++i)
      EXPECT_EQ(at(layout->loss, s.val_steps[i], s.val_losses[i]), kValLossColor) << "step " << s.val_steps[i];
    // Every point is inside its panel.
    EXPECT_GE(layout->loss.py(*std::max_element(s.losses.begin(), s.losses.end())), layout->loss.top);
    EXPECT_LE(layout->throughput.py(40000), layout->throughput.bottom);
  }
}

TEST(Plot, MetricsThatCannotBePlottedAreErrorsThatSayWhy) {
  const std::string dir = temp_path("plotdir");
  std::filesystem::create_directories(dir);
  auto missing = plot_run(dir, "", 1000, 700);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("metrics.jsonl: no such file"), std::string::npos);
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\": 10, \"val_loss\": 3.5}\n";
  auto evals_only = plot_run(dir, "", 1000, 700);
  EXPECT_NE(evals_only.status().message().find("no training step logged"), std::string::npos);
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\": 1, \"loss\": 3.5, \"tokens_per_s\": 100}\nnot json\n";
  auto bad = plot_run(dir, "", 1000, 700);
  EXPECT_NE(bad.status().message().find("metrics.jsonl:2: not a metrics line"), std::string::npos) << bad.status();
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\": 1, \"loss\": 3.5, \"tokens_per_s\": 100}\n";
  EXPECT_NE(plot_run(dir, "", 100, 700).status().message().find("--width: 100 pixels"), std::string::npos);
  EXPECT_NE(plot_run(dir, "", 1000, 20000).status().message().find("--height: 20000 pixels"), std::string::npos);
  auto one_step = plot_run(dir, "", 400, 300);  // a single point: the axes still span something
  ASSERT_TRUE(one_step.ok()) << one_step.status();
  EXPECT_EQ(read_png(*one_step).width(), 400);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain::trainer
