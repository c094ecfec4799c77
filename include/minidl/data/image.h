// Reading a photo or drawing of a digit and turning it into an MNIST-like input.
#pragma once

#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<float> pixels;  // row-major, 0 (black) .. 255 (white)
};

// Decodes PNG, JPEG, BMP, GIF, TGA, PSD, PNM (stb_image) from memory to grey levels. 16-bit
// images are reduced to 8 bits; transparent pixels are composited on white. Images over
// kMaxImagePixels or with a zero side are refused before decoding. Throws InputError naming
// `source`.
constexpr int64_t kMaxImagePixels = int64_t{1} << 26;  // 64 Mpixel
GrayImage decode_image(const std::string& bytes, const std::string& source);
GrayImage load_image(const std::string& path);

// MNIST's preprocessing, as the data set was made: a white digit on black (inverted when the
// background is light), cropped to the digit, scaled to fit 20x20 keeping its aspect ratio,
// placed in 28x28 with its centre of mass at the centre, normalised as the training data
// ((x/255 - 0.1307)/0.3081). Returns [1, 1, 28, 28]. An image with no digit (uniform) is an
// InputError.
Tensor mnist_preprocess(const GrayImage& image, const std::string& source);

}  // namespace minidl
