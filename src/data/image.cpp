#include "minidl/data/image.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "minidl/data/idx.h"
#include "minidl/io/file.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wpedantic"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace minidl {

GrayImage decode_image(const std::string& bytes, const std::string& source) {
  if (bytes.empty()) throw InputError(source + ": empty file, expected an image");
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw InputError(source + ": file too large for an image");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &channels))
    throw InputError(source + ": not a readable image (" + stbi_failure_reason() +
                     "); expected PNG, JPEG, BMP, GIF, TGA, PSD or PNM");
  if (w <= 0 || h <= 0) throw InputError(detail::concat(source, ": image has size ", w, "x", h, ", expected at least 1x1"));
  if (static_cast<int64_t>(w) * h > kMaxImagePixels)
    throw InputError(detail::concat(source, ": image is ", w, "x", h, " pixels, more than the ", kMaxImagePixels,
                                    " accepted"));
  // Grey + alpha, 8 bits per channel (stb reduces 16-bit images).
  int got = 0;
  stbi_uc* pixels = stbi_load_from_memory(data, len, &w, &h, &got, 2);
  if (!pixels) throw InputError(source + ": cannot decode the image (" + stbi_failure_reason() + ")");
  GrayImage image;
  image.width = w;
  image.height = h;
  image.pixels.resize(static_cast<size_t>(w) * static_cast<size_t>(h));
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const float grey = pixels[2 * i], alpha = pixels[2 * i + 1] / 255.0f;
    image.pixels[i] = alpha * grey + (1.0f - alpha) * 255.0f;  // on white
  }
  stbi_image_free(pixels);
  return image;
}

GrayImage load_image(const std::string& path) { return decode_image(read_file(path, int64_t{1} << 28), path); }

namespace {

// Area-averaging resize of src (w x h) to (nw x nh).
std::vector<float> resize_area(const std::vector<float>& src, int w, int h, int nw, int nh) {
  std::vector<float> out(static_cast<size_t>(nw) * static_cast<size_t>(nh), 0.0f);
  const double sx = static_cast<double>(w) / nw, sy = static_cast<double>(h) / nh;
  for (int oy = 0; oy < nh; ++oy) {
    const double y0 = oy * sy, y1 = (oy + 1) * sy;
    for (int ox = 0; ox < nw; ++ox) {
      const double x0 = ox * sx, x1 = (ox + 1) * sx;
      double total = 0.0, area = 0.0;
      for (int y = static_cast<int>(y0); y < std::min(h, static_cast<int>(std::ceil(y1))); ++y) {
        const double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        if (wy <= 0) continue;
        for (int x = static_cast<int>(x0); x < std::min(w, static_cast<int>(std::ceil(x1))); ++x) {
          const double wx = std::min<double>(x + 1, x1) - std::max<double>(x, x0);
          if (wx <= 0) continue;
          total += wx * wy * src[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)];
          area += wx * wy;
        }
      }
      out[static_cast<size_t>(oy) * static_cast<size_t>(nw) + static_cast<size_t>(ox)] =
          area > 0 ? static_cast<float>(total / area) : 0.0f;
    }
  }
  return out;
}

}  // namespace

Tensor mnist_preprocess(const GrayImage& image, const std::string& source) {
  const int w = image.width, h = image.height;
  MINIDL_CHECK(w > 0 && h > 0 && image.pixels.size() == static_cast<size_t>(w) * static_cast<size_t>(h),
               "mnist_preprocess: inconsistent image size");
  // Background = the median of the border; light background -> invert to white on black.
  std::vector<float> border;
  for (int x = 0; x < w; ++x) {
    border.push_back(image.pixels[static_cast<size_t>(x)]);
    border.push_back(image.pixels[static_cast<size_t>(h - 1) * w + x]);
  }
  for (int y = 0; y < h; ++y) {
    border.push_back(image.pixels[static_cast<size_t>(y) * w]);
    border.push_back(image.pixels[static_cast<size_t>(y) * w + w - 1]);
  }
  std::nth_element(border.begin(), border.begin() + static_cast<std::ptrdiff_t>(border.size() / 2), border.end());
  const float background = border[border.size() / 2];
  const bool invert = background > 127.5f;
  std::vector<float> ink(image.pixels.size());
  float lo = 255.0f, hi = 0.0f;
  for (size_t i = 0; i < ink.size(); ++i) {
    ink[i] = invert ? 255.0f - image.pixels[i] : image.pixels[i];
    lo = std::min(lo, ink[i]);
    hi = std::max(hi, ink[i]);
  }
  if (hi - lo < 1.0f) throw InputError(source + ": the image is uniform; expected a digit on a plain background");
  // Stretch to 0..255 with the background at 0.
  const float floor_level = invert ? 255.0f - background : background;
  for (float& v : ink) v = std::clamp((v - floor_level) / std::max(hi - floor_level, 1.0f) * 255.0f, 0.0f, 255.0f);
  // Bounding box of the ink.
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (ink[static_cast<size_t>(y) * w + x] > 25.0f) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
  if (x1 < 0) throw InputError(source + ": no digit found (no pixel stands out from the background)");
  const int cw = x1 - x0 + 1, ch = y1 - y0 + 1;
  std::vector<float> crop(static_cast<size_t>(cw) * static_cast<size_t>(ch));
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x)
      crop[static_cast<size_t>(y) * cw + x] = ink[static_cast<size_t>(y0 + y) * w + (x0 + x)];
  // Fit in 20x20, keeping the aspect ratio.
  const double scale = 20.0 / std::max(cw, ch);
  const int nw = std::max(1, static_cast<int>(std::lround(cw * scale)));
  const int nh = std::max(1, static_cast<int>(std::lround(ch * scale)));
  std::vector<float> small = resize_area(crop, cw, ch, nw, nh);
  // Centre of mass to the centre of the 28x28 field.
  double mass = 0, mx = 0, my = 0;
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const double v = small[static_cast<size_t>(y) * nw + x];
      mass += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  const int left = static_cast<int>(std::lround(14.0 - (mass > 0 ? mx / mass : nw / 2.0)));
  const int top = static_cast<int>(std::lround(14.0 - (mass > 0 ? my / mass : nh / 2.0)));
  std::vector<float> field(28 * 28, 0.0f);
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const int fx = left + x, fy = top + y;
      if (fx >= 0 && fx < 28 && fy >= 0 && fy < 28) field[static_cast<size_t>(fy) * 28 + fx] = small[static_cast<size_t>(y) * nw + x];
    }
  Tensor out = Tensor::empty({1, 1, 28, 28});
  for (int i = 0; i < 28 * 28; ++i) out.data()[i] = (field[static_cast<size_t>(i)] / 255.0f - kMnistMean) / kMnistStd;
  return out;
}

}  // namespace minidl
