// An RGB image in memory with the few drawing operations `memtrain plot` needs (lines, rectangles, text in a 5 x 7
// bitmap font), written as PNG through libpng.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace memtrain::trainer {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);
  int width() const { return width_; }
  int height() const { return height_; }
  Rgb at(int x, int y) const { return pixels_[static_cast<size_t>(y) * width_ + x]; }
  // Every drawing call clips to the image.
  void set(int x, int y, Rgb c);
  // A straight line between two points (pixel centres), `thickness` pixels wide.
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // corners included
  void rect(int x0, int y0, int x1, int y1, Rgb c);       // the outline
  // `text` with its top-left corner at (x, y), each font pixel `scale` x `scale`. Letters are drawn upper-case;
  // characters outside the font as '?'.
  void text(int x, int y, std::string_view text, Rgb c, int scale = 1);
  static int text_width(std::string_view text, int scale = 1) { return static_cast<int>(text.size()) * 6 * scale - scale; }
  static int text_height(int scale = 1) { return 7 * scale; }
  // Writes the image as an 8-bit RGB PNG, atomically (a temporary name, then renamed).
  absl::Status write_png(const std::string& path) const;

 private:
  int width_, height_;
  std::vector<Rgb> pixels_;
};

}  // namespace memtrain::trainer
