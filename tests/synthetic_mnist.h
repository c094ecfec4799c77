// Tiny MNIST-shaped IDX data sets written by the tests themselves (no download, no full data).
// Class k is a bright 6x6 square at a position of its own plus noise: a CNN learns it in a few
// dozen steps.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "minidl/random.h"

namespace minidl::testing {

inline std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xff));
  out.append(values.begin(), values.end());
  return out;
}

inline void write_bytes(const std::string& path, const std::string& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary) << bytes;
  }
}

struct SyntheticSplit {
  std::vector<uint8_t> pixels, labels;
};

inline SyntheticSplit synthetic_split(int n, uint64_t seed) {
  Generator g(seed);
  SyntheticSplit s;
  s.pixels.resize(static_cast<size_t>(n) * 784);
  s.labels.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int k = static_cast<int>(g.below(10));
    s.labels[static_cast<size_t>(i)] = static_cast<uint8_t>(k);
    uint8_t* img = s.pixels.data() + static_cast<size_t>(i) * 784;
    for (int p = 0; p < 784; ++p) img[p] = static_cast<uint8_t>(g.below(40));
    const int top = (k / 5) * 12 + 4 + static_cast<int>(g.below(3)), left = (k % 5) * 5 + 1 + static_cast<int>(g.below(2));
    for (int y = top; y < top + 6; ++y)
      for (int x = left; x < left + 4; ++x) img[y * 28 + x] = static_cast<uint8_t>(200 + g.below(56));
  }
  return s;
}

// Writes train-/t10k- images and labels into dir (which must exist).
inline void write_synthetic_mnist(const std::string& dir, int n_train, int n_test, bool gzip = false, uint64_t seed = 1) {
  const std::string ext = gzip ? ".gz" : "";
  SyntheticSplit train = synthetic_split(n_train, seed), test = synthetic_split(n_test, seed + 1000);
  const uint32_t nt = static_cast<uint32_t>(n_train), ne = static_cast<uint32_t>(n_test);
  write_bytes(dir + "/train-images-idx3-ubyte" + ext, idx_bytes({nt, 28, 28}, train.pixels), gzip);
  write_bytes(dir + "/train-labels-idx1-ubyte" + ext, idx_bytes({nt}, train.labels), gzip);
  write_bytes(dir + "/t10k-images-idx3-ubyte" + ext, idx_bytes({ne, 28, 28}, test.pixels), gzip);
  write_bytes(dir + "/t10k-labels-idx1-ubyte" + ext, idx_bytes({ne}, test.labels), gzip);
}

}  // namespace minidl::testing
