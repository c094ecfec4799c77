// The fuzz targets' entry points, shared by the libFuzzer binaries (tests/fuzz/fuzz_*.cpp,
// built with clang by scripts/fuzz.sh) and by the normal test suite, which replays the seed
// corpora and every regression input through them (tests/test_fuzz_replay.cpp).
// Each returns for an input that is accepted or refused with InputError; anything else (a
// crash, another exception, a broken invariant: FuzzInvariant) is a finding.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

#include "minidl/data/idx.h"
#include "minidl/data/image.h"
#include "minidl/io/safetensors.h"
#include "minidl/nn/models.h"

namespace minidl::fuzz {

struct FuzzInvariant : std::logic_error {
  using std::logic_error::logic_error;
};

// The IDX parser (plain and gzip) as a labels file and as an images file.
inline void idx(const std::string& bytes) {
  for (int dims : {1, 3}) {
    try {
      IdxArray a = parse_idx(bytes, "fuzz", dims);
      uint64_t count = 1;
      for (int64_t d : a.dims) count *= static_cast<uint64_t>(d);
      if (count != a.values.size()) throw FuzzInvariant("IDX: dims and values disagree");
    } catch (const InputError&) {
    }
  }
}

// The safetensors decoder, then strict loading into the BN-paper MLP.
inline void safetensors(const std::string& bytes) {
  static auto mlp = make_model({ModelKind::Mlp, true, Activation::Sigmoid, BatchNormImpl::Fused, 0, {}});
  try {
    Safetensors file = decode_safetensors(bytes, "fuzz");
    load_state_dict(*mlp, file.tensors, "fuzz");
  } catch (const InputError&) {
  }
}

// Image decoding and MNIST preprocessing, as `minidl predict` runs them, at the default limits.
inline void image(const std::string& bytes) {
  try {
    GrayImage img = decode_image(bytes, "fuzz");
    Tensor x = mnist_preprocess(img, "fuzz");
    for (int64_t i = 0; i < x.numel(); ++i)
      if (!std::isfinite(x.data()[i])) throw FuzzInvariant("image: non-finite preprocessed value");
  } catch (const InputError&) {
  }
}

}  // namespace minidl::fuzz
