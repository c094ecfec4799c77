// IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/): a 4-byte magic
// (0, 0, type, number of dimensions), the dimensions as big-endian uint32, then the values.
// minidl reads unsigned-byte IDX (type 0x08), plain or gzip-compressed (detected by content).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "minidl/random.h"
#include "minidl/tensor.h"

namespace minidl {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;
};

// Validates magic, type, the number of dimensions (expected_dims), and that the dimensions
// match the data size exactly. Throws InputError naming `source`.
IdxArray parse_idx(const std::string& bytes, const std::string& source, int expected_dims);
// Reads a plain or gzip IDX file.
IdxArray read_idx(const std::string& path, int expected_dims);

// Images and labels of one split, kept as bytes (a tenth of the memory of floats); batches
// are normalised as they are drawn: (pixel/255 - mean[c]) / std[c] per channel c.
struct Dataset {
  std::vector<uint8_t> pixels;  // [count, channels, rows, cols]
  std::vector<int32_t> labels;  // [count], each in [0, classes)
  int64_t count = 0, rows = 0, cols = 0;
  int64_t channels = 1;
  int64_t classes = 10;
  std::vector<std::string> class_names;  // empty, or one per class
  std::vector<float> mean{0.1307f}, std{0.3081f};  // one per channel
  // The shape of one example: {channels, rows, cols}.
  std::vector<int64_t> example_shape() const { return {channels, rows, cols}; }
};

// Pairs an image file and a label file: counts must agree, labels must be in [0, classes).
// limit > 0 keeps the first `limit` examples.
Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path, int64_t limit = 0,
                         int classes = 10);

struct Mnist {
  Dataset train, test;
};

// Finds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte in dir, each also as .gz and in the "train-images.idx3-ubyte"
// spelling. Works for any IDX data set laid out the same way (Fashion-MNIST).
std::string find_idx_file(const std::string& dir, const std::string& canonical_name);
Mnist load_mnist(const std::string& dir, int64_t train_limit = 0, int64_t test_limit = 0);

// PyTorch's MNIST normalisation: (x/255 - 0.1307) / 0.3081.
constexpr float kMnistMean = 0.1307f;
constexpr float kMnistStd = 0.3081f;
float normalize_pixel(uint8_t value);

// Copies examples order[begin, end) into images [B, channels, rows, cols] (normalised with the
// data set's per-channel mean and std) and labels.
// `images` is reused when it already has the right shape.
void make_batch(const Dataset& data, const std::vector<int64_t>& order, int64_t begin, int64_t end, Tensor& images,
                std::vector<int32_t>& labels);

// The order of one epoch: a permutation of [0, count) drawn from gen (Fisher-Yates), or the
// identity when shuffle is false.
std::vector<int64_t> epoch_order(int64_t count, bool shuffle, Generator& gen);

}  // namespace minidl
