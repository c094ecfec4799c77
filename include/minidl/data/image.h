// Reading an image: a photo or drawing of a digit turned into an MNIST-like input, or any image
// converted to a model's channels and size.
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
// images are reduced to 8 bits; transparent pixels are composited on white.
//
// What an image may cost is bounded before anything is decoded (docs/reliability.md); the
// image is refused (InputError naming `source`, the declared size and the limit) when
//  - its declared pixel count exceeds max_pixels (default kMaxImagePixels, 16 Mpixel: a
//    12-Mpixel phone photo of a digit passes; `minidl predict --max-pixels` raises it), or a
//    side is zero;
//  - the file is shorter than the pixel data it declares, for the formats that store pixels
//    uncompressed (BMP without RLE, PNM, TGA without RLE), or than the least a format's
//    compression needs for that many pixels (TGA RLE: a byte per 128 pixels; PNG: deflate's
//    1032:1; JPEG: a bit per 8x8 block; GIF: LZW codes of 3+ bits expanding to 4096 pixels at
//    most; PSD: PackBits' 64 samples per byte).
// Peak memory of decode_image + mnist_preprocess is then at most kImageBytesPerPixel bytes per
// declared pixel plus the file itself (measured by a test).
constexpr int64_t kMaxImagePixels = int64_t{1} << 24;  // 16 Mpixel
constexpr int64_t kImageBytesPerPixel = 24;
// Files larger than this are refused before they are read.
constexpr int64_t kMaxImageFileBytes = int64_t{1} << 28;  // 256 MiB
GrayImage decode_image(const std::string& bytes, const std::string& source, int64_t max_pixels = kMaxImagePixels);

// An image with `channels` planes, [channels][height][width], 0..255.
struct Image {
  int width = 0, height = 0, channels = 1;
  std::vector<float> pixels;
};
// decode_image with the same bounds, to 1 channel (grey, as decode_image) or 3 (RGB; a grey
// file's level in all three), transparent pixels composited on white.
Image decode_image_channels(const std::string& bytes, const std::string& source, int channels,
                            int64_t max_pixels = kMaxImagePixels);
Image load_image_channels(const std::string& path, int channels, int64_t max_pixels = kMaxImagePixels);
// Area-averaging resize of every plane to width x height.
Image resize_image(const Image& image, int width, int height);
// An image as a model's input [1, C, H, W]: resized to H x W (area averaging), each value rounded
// to a byte level as the data set stores them, then (v/255 - mean[c]) / std[c]. The image must
// already have the model's C channels (decode_image_channels).
Tensor image_to_input(const Image& image, const std::vector<int64_t>& shape, const std::vector<float>& mean,
                      const std::vector<float>& std);
GrayImage load_image(const std::string& path, int64_t max_pixels = kMaxImagePixels);

// MNIST's preprocessing, as the data set was made: a white digit on black (inverted when the
// background is light), cropped to the digit, scaled to fit 20x20 keeping its aspect ratio,
// placed in 28x28 with its centre of mass at the centre, normalised as the training data
// ((x/255 - 0.1307)/0.3081). Returns [1, 1, 28, 28]. An image with no digit (uniform) is an
// InputError.
Tensor mnist_preprocess(const GrayImage& image, const std::string& source);

}  // namespace minidl
