// The fuzz targets' entry points, shared by the libFuzzer binaries (tests/fuzz/fuzz_*.cpp,
// built with clang by scripts/fuzz.sh) and by the normal test suite, which replays the seed
// corpora and every regression input through them (tests/test_fuzz_replay.cpp).
// Each returns for an input that is accepted or refused with InputError; anything else (a
// crash, another exception, a broken invariant: FuzzInvariant) is a finding.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "minidl/data/dataset.h"
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

namespace detail {
// A directory for the loaders' files, made once per process and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "minidl-fuzz-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

// A 24-bit uncompressed BMP of w x h pixels, all of colour (r, g, b) except a brighter first row.
inline std::string bmp(int w, int h, unsigned char r, unsigned char g, unsigned char b) {
  const int row = (3 * w + 3) / 4 * 4, data = row * h, size = 54 + data;
  std::string out(static_cast<size_t>(size), '\0');
  auto le = [&](int at, uint32_t v, int n) {
    for (int i = 0; i < n; ++i) out[static_cast<size_t>(at + i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  out[0] = 'B', out[1] = 'M';
  le(2, static_cast<uint32_t>(size), 4), le(10, 54, 4), le(14, 40, 4), le(18, static_cast<uint32_t>(w), 4);
  le(22, static_cast<uint32_t>(h), 4), le(26, 1, 2), le(28, 24, 2), le(34, static_cast<uint32_t>(data), 4);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t at = static_cast<size_t>(54 + y * row + 3 * x);
      const int lift = y == h - 1 ? 60 : 0;  // BMP rows go bottom-up: the image's first row
      out[at] = static_cast<char>(std::min(255, b + lift));
      out[at + 1] = static_cast<char>(std::min(255, g + lift));
      out[at + 2] = static_cast<char>(std::min(255, r + lift));
    }
  return out;
}

inline void put(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// What every loaded split must be, whatever its file held: shapes that agree, labels among
// the classes, names one per class or none, finite statistics, and no more pixels than
// `budget` bytes (the bounded-cost rule: a split costs what its files hold).
inline void check_split(const Dataset& d, size_t budget, const char* what) {
  const auto example = static_cast<size_t>(d.channels * d.rows * d.cols);
  if (d.count < 0 || d.channels <= 0 || d.rows <= 0 || d.cols <= 0 || d.classes < 2)
    throw FuzzInvariant(std::string(what) + ": bad dimensions");
  if (d.pixels.size() != static_cast<size_t>(d.count) * example || d.labels.size() != static_cast<size_t>(d.count))
    throw FuzzInvariant(std::string(what) + ": pixels or labels disagree with the count");
  for (int32_t l : d.labels)
    if (l < 0 || l >= d.classes) throw FuzzInvariant(std::string(what) + ": a label outside the classes");
  if (!d.class_names.empty() && static_cast<int64_t>(d.class_names.size()) != d.classes)
    throw FuzzInvariant(std::string(what) + ": class names do not match the class count");
  for (float v : d.mean)
    if (!std::isfinite(v)) throw FuzzInvariant(std::string(what) + ": non-finite mean");
  for (float v : d.std)
    if (!std::isfinite(v) || v <= 0) throw FuzzInvariant(std::string(what) + ": non-finite or zero std");
  if (d.pixels.size() > budget) throw FuzzInvariant(std::string(what) + ": more pixels than the input holds");
}
}  // namespace detail

// The CIFAR readers: byte 0 picks CIFAR-10, CIFAR-100 or CIFAR-100 coarse; byte 1 is the length
// of the class-names file that follows (0: none); the rest is the test split's binary file.
inline void cifar(const std::string& bytes) {
  if (bytes.size() < 2 || bytes.size() > (size_t{1} << 20)) return;
  static const char* const kFormats[] = {"cifar10", "cifar100", "cifar100-coarse"};
  const int which = static_cast<unsigned char>(bytes[0]) % 3;
  const size_t names_len = std::min<size_t>(static_cast<unsigned char>(bytes[1]), bytes.size() - 2);
  const std::string names = bytes.substr(2, names_len), batch = bytes.substr(2 + names_len);
  const std::filesystem::path dir = detail::scratch_dir() / "cifar";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  detail::put(dir / (which == 0 ? "test_batch.bin" : "test.bin"), batch);
  if (names_len > 0)  // 0: no names file (the loader then has no class names)
    detail::put(dir / (which == 0 ? "batches.meta.txt" : which == 1 ? "fine_label_names.txt" : "coarse_label_names.txt"), names);
  DataOptions o;
  o.format = kFormats[which];
  o.load_train = false;
  o.normalize = "dataset";
  try {
    const Mnist m = load_dataset(dir.string(), o);
    detail::check_split(m.test, batch.size(), "cifar");
    if (m.test.channels != 3 || m.test.rows != 32 || m.test.cols != 32) throw FuzzInvariant("cifar: not 3x32x32");
  } catch (const InputError&) {
  }
}

// The image-folder reader: byte 0 picks what the rest is.
//   even: an image file, train/b/x.<ext> (ext from byte 1) beside fixed valid images, loaded
//         without the cache at a size (1..64) and channel count (1 or 3) from byte 2;
//   odd:  the decoded-set cache of a fixed valid folder, overwritten with the rest. A cache that
//         is not whole and right for the folder must be ignored (the set decoded again), never
//         trusted into labels or shapes the folder cannot have.
inline void image_folder(const std::string& bytes) {
  if (bytes.size() < 3 || bytes.size() > (size_t{1} << 20)) return;
  namespace fs = std::filesystem;
  // Valid images for the fixed part of the folder.
  static const std::string kGrey = detail::bmp(2, 2, 40, 40, 40), kRed = detail::bmp(3, 2, 200, 10, 10);
  const bool cache_mode = (static_cast<unsigned char>(bytes[0]) & 1) != 0;
  const fs::path root = detail::scratch_dir() / (cache_mode ? "cached-folder" : "folder");
  DataOptions o;
  o.format = "imagefolder";
  o.image_size = 1 + static_cast<unsigned char>(bytes[2]) % 64;
  o.channels = (static_cast<unsigned char>(bytes[2]) & 0x80) ? 3 : 1;
  std::error_code ec;
  if (!cache_mode) {
    fs::remove_all(root, ec);
    static const char* const kExt[] = {"png", "jpg", "bmp", "jpeg"};
    detail::put(root / "train" / "a" / "1.bmp", kGrey);
    detail::put(root / "test" / "a" / "1.bmp", kRed);
    detail::put(root / "train" / "b" / (std::string("x.") + kExt[static_cast<unsigned char>(bytes[1]) % 4]), bytes.substr(3));
    o.cache = false;
    try {
      const Mnist m = load_dataset(root.string(), o);
      const size_t budget = static_cast<size_t>(2 * o.channels * o.image_size * o.image_size);
      detail::check_split(m.train, budget, "image folder train");
      detail::check_split(m.test, budget, "image folder test");
      if (m.train.classes != 2 || m.train.count != 2) throw FuzzInvariant("image folder: not 2 classes of 1 image each");
    } catch (const InputError&) {
    }
    return;
  }
  // The fixed folder, loaded once with the cache on (which writes it); then the fuzzed cache.
  o.image_size = 4;
  o.channels = 1;
  static Mnist reference;
  static fs::path cache_file;
  if (cache_file.empty()) {
    fs::remove_all(root, ec);
    detail::put(root / "train" / "a" / "1.bmp", kGrey);
    detail::put(root / "train" / "b" / "1.bmp", kRed);
    detail::put(root / "test" / "b" / "1.bmp", kGrey);
    reference = load_dataset(root.string(), o);
    for (const auto& e : fs::directory_iterator(root / ".minidl-cache"))
      if (e.path().filename().string().rfind("train-", 0) == 0) cache_file = e.path();
    if (cache_file.empty()) throw FuzzInvariant("image folder: the first load wrote no cache");
  }
  std::string cache = bytes.substr(3);
  fs::file_time_type mtime = fs::last_write_time(cache_file, ec);
  detail::put(cache_file, cache);
  fs::last_write_time(cache_file, mtime, ec);
  try {
    const Mnist m = load_dataset(root.string(), o);
    detail::check_split(m.train, std::max<size_t>(cache.size(), 32), "image folder cache");
    if (m.train.count != 2 || m.train.channels != 1 || m.train.rows != 4 || m.train.cols != 4 || m.train.classes != 2)
      throw FuzzInvariant("image folder cache: a cache accepted for a folder it does not describe");
  } catch (const InputError&) {
  }
}

}  // namespace minidl::fuzz
