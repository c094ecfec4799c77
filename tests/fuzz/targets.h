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
#include "minidl/nn/spec.h"
#include "minidl/schedule.h"

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

// The --arch parser and checker (syntax, layer names, parameters, res(...) nesting), without
// building: a spec is refused with SpecError, and an accepted one is a fixed point of its
// canonical form, and stays a valid spec without its bn layers (compare's no-BN arm).
inline void spec(const std::string& text) {
  if (text.size() > 4096) return;  // --arch is a command-line string
  try {
    check_spec(text);
    const std::string canonical = canonical_spec(text);
    if (canonical_spec(canonical) != canonical) throw FuzzInvariant("spec: canonical form is not a fixed point");
    check_spec(canonical);
    const std::string without = spec_without(text, "bn");
    if (!without.empty()) check_spec(without);
  } catch (const SpecError&) {
  }
}

// --lr-schedule and --warmup: refused with Error, or every step's lr (and OneCycle's momentum)
// finite and non-negative over a run.
inline void lr_schedule(const std::string& bytes) {
  if (bytes.size() > 256) return;
  const int64_t warmup = bytes.empty() ? 0 : static_cast<unsigned char>(bytes[0]) % 50;
  const std::string text = bytes.empty() ? "" : bytes.substr(1);
  try {
    const LrSchedule s = parse_lr_schedule(text, warmup);
    for (int64_t total : {1, 7, 100})
      for (int64_t t = 0; t < total; ++t) {
        const double lr = s.lr_at(t, 0.1, total);
        double m = 0;
        if (!std::isfinite(lr) || lr < 0) throw FuzzInvariant("lr schedule: a non-finite or negative lr");
        if (s.momentum_at(t, total, m) && !std::isfinite(m)) throw FuzzInvariant("lr schedule: non-finite momentum");
      }
  } catch (const InputError&) {
  } catch (const FuzzInvariant&) {
    throw;
  } catch (const Error&) {
  }
}

}  // namespace minidl::fuzz
