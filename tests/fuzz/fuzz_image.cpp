// libFuzzer target: image decoding (stb_image) and MNIST-style preprocessing for predict.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "minidl/data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    minidl::GrayImage image = minidl::decode_image(bytes, "fuzz");
    minidl::Tensor x = minidl::mnist_preprocess(image, "fuzz");
    for (int64_t i = 0; i < x.numel(); ++i)
      if (!std::isfinite(x.data()[i])) __builtin_trap();
  } catch (const minidl::InputError&) {
  }
  return 0;
}
