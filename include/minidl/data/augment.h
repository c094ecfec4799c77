// Training-time augmentation, off by default: `--augment crop:4,flip`.
//   crop:P  pad each image by P on every side with black (pixel 0, as torchvision's
//           RandomCrop(size, padding=P) fills before Normalize), then crop a random window of the
//           original size
//   flip    mirror each image left to right with probability 1/2 (RandomHorizontalFlip)
// The draws of an example depend only on the seed, the step and the example's position in the
// global batch: the arms of one seed see the same augmented batches, a resumed run the same as
// an uninterrupted one, and R ranks the same as one process.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

struct Augment {
  int64_t crop_padding = 0;
  bool flip = false;
  bool enabled() const { return crop_padding > 0 || flip; }
};

// "crop:4,flip", "flip", "crop:2", "none" or "". Throws Error naming the bad item.
Augment parse_augment(const std::string& text);
std::string to_string(const Augment& augment);

// Augments images [B, C, H, W] in place; they are normalised, (pixel/255 - mean[c]) / std[c], so
// padding takes the value of a black pixel, -mean[c]/std[c]. Example b is the global batch's
// example first + b.
void augment_batch(Tensor& images, const Augment& augment, const std::vector<float>& mean,
                   const std::vector<float>& std, uint64_t seed, int64_t step, int64_t first);

}  // namespace minidl
