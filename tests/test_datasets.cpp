// The data-set formats of data/dataset.h, read from files the tests write in the published
// layouts: CIFAR-10 and CIFAR-100 binaries, an image folder; detection, statistics, the cache,
// bad files, and the app training on CIFAR-shaped data end to end.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "minidl/checkpoint.h"
#include "minidl/data/augment.h"
#include "minidl/data/dataset.h"
#include "minidl/random.h"
#include "temp_dir.h"
#include "torch_fixtures.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>  // implemented in test_app.cpp
#pragma GCC diagnostic pop

using namespace minidl;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// One CIFAR record: label bytes, then the red, green and blue planes of a 32x32 image whose
// pixel (c, y, x) is (label * 20 + c * 7 + y + x) % 256, plus `bright` in the label's band of rows.
std::string cifar_record(const std::vector<int>& labels, int label, bool bright = false) {
  std::string r;
  for (int l : labels) r.push_back(static_cast<char>(l));
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        int v = (label * 20 + c * 7 + y + x) % 256;
        if (bright) v = (y / 3 == label % 10 && c == label % 3) ? 250 : (y * 5 + x * 3) % 60;
        r.push_back(static_cast<char>(v));
      }
  return r;
}

// CIFAR-10's layout: data_batch_1..5.bin with `per_batch` records, test_batch.bin with `test`.
void write_cifar10(const std::string& dir, int per_batch, int test, bool bright = false) {
  Generator gen(7);
  for (int b = 1; b <= 5; ++b) {
    std::string bytes;
    for (int i = 0; i < per_batch; ++i) {
      const int label = bright ? static_cast<int>(gen.below(10)) : (b + i) % 10;
      bytes += cifar_record({label}, label, bright);
    }
    write_bytes(dir + "/data_batch_" + std::to_string(b) + ".bin", bytes);
  }
  std::string bytes;
  for (int i = 0; i < test; ++i) {
    const int label = bright ? static_cast<int>(gen.below(10)) : i % 10;
    bytes += cifar_record({label}, label, bright);
  }
  write_bytes(dir + "/test_batch.bin", bytes);
  write_bytes(dir + "/batches.meta.txt",
              "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
}

std::string png_rgb(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> px;
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), {r, g, b});
  std::string out;
  stbi_write_png_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), static_cast<size_t>(size)); },
                         &out, w, h, 3, px.data(), w * 3);
  return out;
}
}  // namespace

TEST_CASE("datasets: CIFAR-10 binaries load as published, detected, with names and statistics", "[data][cifar]") {
  TempDir d;
  const std::string root = d.path() + "/cifar-10-batches-bin";  // as the archive unpacks
  write_cifar10(root, 3, 4);
  REQUIRE(detect_data_format(d.path()) == "cifar10");
  REQUIRE(detect_data_format(root) == "cifar10");
  const Mnist m = load_dataset(d.path());
  REQUIRE(m.train.count == 15);
  REQUIRE(m.test.count == 4);
  REQUIRE(m.train.example_shape() == std::vector<int64_t>{3, 32, 32});
  REQUIRE(m.train.classes == 10);
  REQUIRE(m.train.class_names.size() == 10);
  REQUIRE(m.train.class_names[3] == "cat");
  // Record 1 of data_batch_2: label (2 + 1) % 10 = 3; pixel (c, y, x) as written, planes in order.
  const int64_t i = 3 + 1;
  REQUIRE(m.train.labels[static_cast<size_t>(i)] == 3);
  for (int c = 0; c < 3; ++c)
    for (int y : {0, 17, 31})
      for (int x : {0, 5, 31})
        REQUIRE(m.train.pixels[static_cast<size_t>(((i * 3 + c) * 32 + y) * 32 + x)] == (3 * 20 + c * 7 + y + x) % 256);
  // Per-channel mean and std of the training set, in double from the bytes, applied to both splits.
  for (int c = 0; c < 3; ++c) {
    double s = 0, q = 0;
    for (int64_t n = 0; n < m.train.count; ++n)
      for (int k = 0; k < 1024; ++k) {
        const double v = m.train.pixels[static_cast<size_t>((n * 3 + c) * 1024 + k)] / 255.0;
        s += v;
        q += v * v;
      }
    const double mean = s / (15 * 1024), sd = std::sqrt(q / (15 * 1024) - mean * mean);
    REQUIRE(m.train.mean[static_cast<size_t>(c)] == Approx(mean).epsilon(1e-6));
    REQUIRE(m.train.std[static_cast<size_t>(c)] == Approx(sd).epsilon(1e-5));
    REQUIRE(m.test.mean[static_cast<size_t>(c)] == m.train.mean[static_cast<size_t>(c)]);
  }
  DataOptions limited;
  limited.train_limit = 5;  // across files: the first batch's 3 and 2 of the second
  limited.test_limit = 2;
  const Mnist l = load_dataset(d.path(), limited);
  REQUIRE(l.train.count == 5);
  REQUIRE(l.train.labels == std::vector<int32_t>(m.train.labels.begin(), m.train.labels.begin() + 5));
  REQUIRE(l.test.count == 2);
}

TEST_CASE("datasets: CIFAR-100's fine and coarse labels", "[data][cifar]") {
  TempDir d;
  std::string train, test;
  for (int i = 0; i < 6; ++i) train += cifar_record({i % 20, 90 + i % 10}, i);
  for (int i = 0; i < 2; ++i) test += cifar_record({19, 99 - i}, i);
  write_bytes(d.path() + "/cifar-100-binary/train.bin", train);
  write_bytes(d.path() + "/cifar-100-binary/test.bin", test);
  REQUIRE(detect_data_format(d.path()) == "cifar100");
  const Mnist fine = load_dataset(d.path());
  REQUIRE(fine.train.classes == 100);
  REQUIRE(fine.train.labels == std::vector<int32_t>{90, 91, 92, 93, 94, 95});
  REQUIRE(fine.test.labels == std::vector<int32_t>{99, 98});
  REQUIRE(fine.train.pixels[static_cast<size_t>(1 * 3072 + 5)] == (1 * 20 + 0 + 0 + 5) % 256);  // after 2 label bytes
  DataOptions o;
  o.format = "cifar100-coarse";
  const Mnist coarse = load_dataset(d.path(), o);
  REQUIRE(coarse.train.classes == 20);
  REQUIRE(coarse.train.labels == std::vector<int32_t>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("datasets: bad CIFAR files and unknown directories are refused, naming the file", "[data][cifar][reliability]") {
  TempDir d;
  write_cifar10(d.path(), 2, 2);
  // A cut record.
  write_bytes(d.path() + "/test_batch.bin", cifar_record({1}, 1) + std::string(100, '\0'));
  REQUIRE_THROWS_WITH(load_dataset(d.path()), Contains("test_batch.bin") && Contains("records of 3073 bytes"));
  // A label past the 10 classes.
  write_bytes(d.path() + "/test_batch.bin", cifar_record({10}, 1));
  REQUIRE_THROWS_WITH(load_dataset(d.path()), Contains("test_batch.bin: record 0 has label 10, outside 0..9"));
  // A missing batch.
  write_bytes(d.path() + "/test_batch.bin", cifar_record({1}, 1));
  fs::remove(d.path() + "/data_batch_4.bin");
  REQUIRE_THROWS_WITH(load_dataset(d.path()), Contains("data_batch_4.bin: missing"));
  // Class names that are not 10.
  write_cifar10(d.path(), 2, 2);
  write_bytes(d.path() + "/batches.meta.txt", "a\nb\n");
  REQUIRE_THROWS_WITH(load_dataset(d.path()), Contains("batches.meta.txt: names 2 classes, expected 10"));
  TempDir empty;
  REQUIRE_THROWS_AS(detect_data_format(empty.path()), InputError);
  REQUIRE_THROWS_WITH(detect_data_format(empty.path()), Contains("no data set found") && Contains("image folder"));
}

TEST_CASE("datasets: an image folder as ImageFolder reads it, resized, converted and cached", "[data][imagefolder]") {
  TempDir d;
  const std::string root = d.path() + "/photos";
  // Classes sorted by name: "apple" 0, "banana" 1, "cherry" 2 (written out of order).
  write_bytes(root + "/train/cherry/b.png", png_rgb(8, 6, 200, 10, 30));
  write_bytes(root + "/train/cherry/a.png", png_rgb(5, 5, 190, 20, 40));
  write_bytes(root + "/train/apple/x.png", png_rgb(12, 12, 30, 200, 10));
  write_bytes(root + "/train/banana/y.png", png_rgb(3, 9, 250, 240, 20));
  write_bytes(root + "/train/banana/notes.txt", "not an image");
  write_bytes(root + "/test/apple/t.png", png_rgb(4, 4, 30, 190, 20));
  REQUIRE(detect_data_format(root) == "imagefolder");
  DataOptions o;
  o.image_size = 4;
  const Mnist m = load_dataset(root, o);
  REQUIRE(m.train.class_names == std::vector<std::string>{"apple", "banana", "cherry"});
  REQUIRE(m.train.classes == 3);
  REQUIRE(m.train.count == 4);
  REQUIRE(m.train.labels == std::vector<int32_t>{0, 1, 2, 2});  // class order, then file names
  REQUIRE(m.train.example_shape() == std::vector<int64_t>{3, 4, 4});
  // A uniform image stays uniform when resized: cherry/a.png is the third example.
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 16; ++k)
      REQUIRE(m.train.pixels[static_cast<size_t>((2 * 3 + c) * 16 + k)] == std::vector<int>{190, 20, 40}[static_cast<size_t>(c)]);
  REQUIRE(m.test.count == 1);
  REQUIRE(m.test.labels == std::vector<int32_t>{0});
  // The decoded set is cached, and the cache gives the same bytes.
  REQUIRE(fs::exists(root + "/.minidl-cache"));
  const Mnist again = load_dataset(root, o);
  REQUIRE(again.train.pixels == m.train.pixels);
  REQUIRE(again.train.labels == m.train.labels);
  REQUIRE(again.train.class_names == m.train.class_names);
  // A cache that is not whole and right for the folder is ignored and the set decoded again:
  // labels outside the classes, a count whose size product wraps around 2^64, another shape.
  {
    fs::path cache;
    for (const auto& e : fs::directory_iterator(root + "/.minidl-cache"))
      if (e.path().filename().string().rfind("train-", 0) == 0) cache = e.path();
    REQUIRE(!cache.empty());
    auto header = [](int64_t count, int64_t c, int64_t h, int64_t w, int64_t classes) {
      std::string out("MINIDLIF");
      for (int64_t v : {count, c, h, w, classes}) out.append(reinterpret_cast<const char*>(&v), 8);
      return out;
    };
    auto labels = [](std::vector<int32_t> l) { return std::string(reinterpret_cast<const char*>(l.data()), l.size() * 4); };
    const std::vector<std::string> forged = {
        header(4, 3, 4, 4, 3) + labels({0, 1, 2, 7}) + std::string(4 * 48, '\x11'),
        header(int64_t{7378697629483820647}, 1, 1, 1, 3) + std::string(3, '\0'),  // 48 + 5 * count wraps to 51
        header(4, 3, 2, 8, 3) + labels({0, 1, 2, 2}) + std::string(4 * 48, '\x11'),
        header(3, 3, 4, 4, 3) + labels({0, 1, 2}) + std::string(3 * 48, '\x11'),
    };
    for (const std::string& bytes : forged) {
      write_bytes(cache.string(), bytes);
      const Mnist redone = load_dataset(root, o);
      REQUIRE(redone.train.pixels == m.train.pixels);
      REQUIRE(redone.train.labels == m.train.labels);
    }
  }
  // Grey: the luma of each colour.
  o.channels = 1;
  const Mnist grey = load_dataset(root, o);
  REQUIRE(grey.train.channels == 1);
  REQUIRE(grey.train.pixels[2 * 16] == (190 * 77 + 20 * 150 + 40 * 29) >> 8);
  // A test class that train/ lacks, and a broken image, are refused by name.
  write_bytes(root + "/test/durian/z.png", png_rgb(4, 4, 1, 2, 3));
  REQUIRE_THROWS_WITH(load_dataset(root, o), Contains("durian") && Contains("train/ does not have"));
  fs::remove_all(root + "/test/durian");
  write_bytes(root + "/train/apple/broken.png", "\x89PNG\r\n\x1a\n garbage");
  REQUIRE_THROWS_WITH(load_dataset(root, o), Contains("broken.png"));
}

TEST_CASE("datasets: the app trains a spec on CIFAR-shaped data, and eval and predict use its metadata",
          "[app][cifar]") {
  TempDir d;
  write_cifar10(d.path(), 60, 60, true);  // separable: the label's channel bright in its band of rows
  const std::string ckpt = d.path() + "/c.safetensors", arch = "conv(8,3,pad=1) bn relu maxpool(4) flatten linear(10)";
  auto r = minidl::testing::run_app("train --data " + d.path() + " --arch '" + arch +
                                        "' --epochs 6 --batch-size 20 --lr 0.05 --eval-every 0 --augment crop:1,flip --quiet --save " + ckpt,
                                    d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const Safetensors file = load_safetensors(ckpt);
  REQUIRE(file.metadata.at("input_shape") == "3,32,32");
  REQUIRE(file.metadata.at("classes") == "10");
  REQUIRE(file.metadata.at("class_names").find("\"truck\"") != std::string::npos);
  r = minidl::testing::run_app("eval --json --checkpoint " + ckpt + " --data " + d.path(), d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["n"] == 60);
  REQUIRE(j["accuracy"].get<double>() >= 0.9);  // chance 0.1
  // A preset cannot take this data, and says what to do.
  r = minidl::testing::run_app("train --data " + d.path() + " --steps 1 --quiet", d.path());
  REQUIRE(r.status != 0);
  REQUIRE_THAT(r.err, Contains("cnn preset takes 1x28x28") && Contains("--arch"));
  // predict resizes a user's image to 3x32x32 and names the class: a "bird" image (label 2:
  // channel 2 bright in rows 6-8) of another size.
  std::vector<uint8_t> px(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c)
        px[static_cast<size_t>((y * 64 + x) * 3 + c)] =
            static_cast<uint8_t>((y / 2) / 3 == 2 && c == 2 ? 250 : ((y / 2) * 5 + (x / 2) * 3) % 60);
  std::string png;
  stbi_write_png_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), static_cast<size_t>(size)); },
                         &png, 64, 64, 3, px.data(), 64 * 3);
  write_bytes(d.path() + "/bird.png", png);
  r = minidl::testing::run_app("predict --json --checkpoint " + ckpt + " " + d.path() + "/bird.png", d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto p = nlohmann::json::parse(r.out);
  REQUIRE(p["top"][0]["name"] == "bird");
  REQUIRE(p["top"][0]["class"] == 2);
}

TEST_CASE("augment: crops are shifts with black borders, flips are mirrors, draws are keyed", "[data][augment]") {
  REQUIRE(to_string(parse_augment("crop:4,flip")) == "crop:4,flip");
  REQUIRE_FALSE(parse_augment("none").enabled());
  REQUIRE_THROWS_WITH(parse_augment("crop:0"), Contains("crop:P") && Contains("'crop:0'"));
  REQUIRE_THROWS_WITH(parse_augment("flip,rotate"), Contains("'rotate'"));
  const int64_t B = 400, C = 2, H = 5, W = 6, P = 2;
  const std::vector<float> mean{0.5f, 0.25f}, sd{0.5f, 0.25f};
  Tensor x = Tensor::empty({B, C, H, W});
  Generator g(3);
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 5.0f + g.uniform();  // never a black pixel
  auto at = [&](const Tensor& t, int64_t b, int64_t c, int64_t y, int64_t xx) { return t.data()[((b * C + c) * H + y) * W + xx]; };
  Tensor y = x.clone();
  augment_batch(y, parse_augment("crop:2,flip"), mean, sd, 11, 7, 100);
  std::set<std::pair<int64_t, int64_t>> offsets;
  int mirrored = 0;
  for (int64_t b = 0; b < B; ++b) {
    // Exactly one (dy, dx, mirror) explains the output: the input shifted, black outside.
    int matches = 0;
    for (int64_t dy = -P; dy <= P; ++dy)
      for (int64_t dx = -P; dx <= P; ++dx)
        for (bool m : {false, true}) {
          bool ok = true;
          for (int64_t c = 0; c < C && ok; ++c)
            for (int64_t r = 0; r < H && ok; ++r)
              for (int64_t q = 0; q < W && ok; ++q) {
                const int64_t sy = r + dy, sx = (m ? W - 1 - q : q) + dx;
                const float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? at(x, b, c, sy, sx)
                                                                          : -mean[static_cast<size_t>(c)] / sd[static_cast<size_t>(c)];
                ok = at(y, b, c, r, q) == want;
              }
          if (ok) {
            ++matches;
            offsets.insert({dy, dx});
            mirrored += m;
          }
        }
    REQUIRE(matches == 1);
  }
  REQUIRE(offsets.size() == 25);  // every shift of [-2, 2]^2 drawn over 400 examples
  REQUIRE(mirrored > 150);
  REQUIRE(mirrored < 250);  // about half
  // Keyed by (seed, step, position): the same key gives the same batch, split anywhere.
  Tensor again = x.clone();
  augment_batch(again, parse_augment("crop:2,flip"), mean, sd, 11, 7, 100);
  REQUIRE(again.to_vector() == y.to_vector());
  Tensor tail = Tensor::empty({B / 2, C, H, W});
  std::copy(x.data() + (B / 2) * C * H * W, x.data() + x.numel(), tail.data());
  augment_batch(tail, parse_augment("crop:2,flip"), mean, sd, 11, 7, 100 + B / 2);
  REQUIRE(std::equal(tail.data(), tail.data() + tail.numel(), y.data() + (B / 2) * C * H * W));
  Tensor other = x.clone();
  augment_batch(other, parse_augment("crop:2,flip"), mean, sd, 11, 8, 100);  // the next step draws anew
  REQUIRE(other.to_vector() != y.to_vector());
}

TEST_CASE("augment: the PyTorch peer's reimplemented draws are minidl's, shift for shift", "[data][augment][torch]") {
  // scripts/pytorch_peer.py draws (dy, dx, mirror) per example itself; the fixture holds its draws.
  const int64_t C = 1, H = 9, W = 9;
  int checked = 0;
  for (const auto& c : minidl::testing::torch_cases()["augment_draws"]) {
    const auto draws = c["draws"].get<std::vector<std::vector<int64_t>>>();
    const int64_t B = static_cast<int64_t>(draws.size()), P = c["padding"].get<int64_t>();
    Tensor x = Tensor::empty({B, C, H, W});
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(i % (H * W) + 1);  // 0 is black
    Tensor y = x.clone();
    Augment a;
    a.crop_padding = P;
    a.flip = c["flip"].get<bool>();
    augment_batch(y, a, {0.0f}, {1.0f}, c["seed"].get<uint64_t>(), c["step"].get<int64_t>(), c["first"].get<int64_t>());
    for (int64_t b = 0; b < B; ++b) {
      const int64_t dy = draws[static_cast<size_t>(b)][0], dx = draws[static_cast<size_t>(b)][1];
      const bool m = draws[static_cast<size_t>(b)][2] != 0;
      for (int64_t r = 0; r < H; ++r)
        for (int64_t q = 0; q < W; ++q) {
          const int64_t sy = r + dy, sx = (m ? W - 1 - q : q) + dx;
          const float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? x.data()[(b * H + sy) * W + sx] : 0.0f;
          REQUIRE(y.data()[(b * H + r) * W + q] == want);
        }
      ++checked;
    }
  }
  REQUIRE(checked == 3 * 3 * 2 * 3 * 4);
}
