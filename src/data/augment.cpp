#include "minidl/data/augment.h"

#include <algorithm>
#include <sstream>

#include "minidl/error.h"
#include "minidl/random.h"

namespace minidl {

Augment parse_augment(const std::string& text) {
  Augment a;
  if (text.empty() || text == "none") return a;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item == "flip") {
      a.flip = true;
    } else if (item.rfind("crop:", 0) == 0) {
      const std::string n = item.substr(5);
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(n, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      MINIDL_CHECK(used == n.size() && used > 0 && v >= 1 && v <= 64, "--augment: 'crop:P' takes a padding of 1 to 64, got '",
                   item, "'");
      a.crop_padding = v;
    } else {
      throw Error("--augment: expected a comma-separated list of crop:P and flip (or none), got '" + item + "' in '" +
                  text + "'");
    }
  }
  return a;
}

std::string to_string(const Augment& a) {
  if (!a.enabled()) return "none";
  std::string s = a.crop_padding > 0 ? "crop:" + std::to_string(a.crop_padding) : "";
  if (a.flip) s += s.empty() ? "flip" : ",flip";
  return s;
}

void augment_batch(Tensor& images, const Augment& a, const std::vector<float>& mean, const std::vector<float>& std,
                   uint64_t seed, int64_t step, int64_t first) {
  if (!a.enabled()) return;
  MINIDL_CHECK(images.dim() == 4, "augment: images must be [B, C, H, W], got ", shape_to_string(images.shape()));
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3), P = a.crop_padding;
  MINIDL_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C,
               "augment: one mean and std per channel expected");
  std::vector<float> plane(static_cast<size_t>(H * W));
  for (int64_t b = 0; b < B; ++b) {
    // splitmix-style mixing of (seed, step, position): independent streams per example.
    uint64_t key = seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL ^
                   (static_cast<uint64_t>(first + b) + 1) * 0x94D049BB133111EBULL;
    Generator gen(key);
    const int64_t dy = P > 0 ? static_cast<int64_t>(gen.below(static_cast<uint32_t>(2 * P + 1))) - P : 0;
    const int64_t dx = P > 0 ? static_cast<int64_t>(gen.below(static_cast<uint32_t>(2 * P + 1))) - P : 0;
    const bool mirror = a.flip && gen.below(2) == 1;
    for (int64_t c = 0; c < C; ++c) {
      float* p = images.data() + (b * C + c) * H * W;
      const float black = -mean[static_cast<size_t>(c)] / std[static_cast<size_t>(c)];
      // Output (y, x) is the padded image's (y + P + dy, x + P + dx), i.e. the input's (y + dy, x + dx),
      // then mirrored.
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const int64_t sy = y + dy, sx = (mirror ? W - 1 - x : x) + dx;
          plane[static_cast<size_t>(y * W + x)] = sy >= 0 && sy < H && sx >= 0 && sx < W ? p[sy * W + sx] : black;
        }
      std::copy(plane.begin(), plane.end(), p);
    }
  }
}

}  // namespace minidl
