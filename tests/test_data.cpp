// IDX reading (plain and gzip), validation of bad files, batching and epoch order.
#include <catch2/catch.hpp>
#include <set>

#include "minidl/data/idx.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

using namespace minidl;
using namespace minidl::testing;

namespace {
void require_bad(const std::string& bytes, int dims, const std::string& message) {
  INFO("expecting: " << message);
  REQUIRE_THROWS_AS(parse_idx(bytes, "f.idx", dims), InputError);
  REQUIRE_THROWS_WITH(parse_idx(bytes, "f.idx", dims), Catch::Contains(message));
}

std::string gzip_of(const std::string& bytes) {
  TempDir d;
  write_bytes(d.path() + "/x.gz", bytes, true);
  std::ifstream in(d.path() + "/x.gz", std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("idx: reads plain and gzip files with the same result", "[data][idx]") {
  const std::string bytes = idx_bytes({2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  IdxArray plain = parse_idx(bytes, "p", 3);
  REQUIRE(plain.dims == std::vector<int64_t>{2, 2, 3});
  REQUIRE(plain.values[11] == 12);
  IdxArray gz = parse_idx(gzip_of(bytes), "g", 3);
  REQUIRE(gz.dims == plain.dims);
  REQUIRE(gz.values == plain.values);
}

TEST_CASE("idx: bad files are refused with the file and the expectation named", "[data][idx][reliability]") {
  const std::string good = idx_bytes({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  require_bad("", 3, "too short for an IDX header");
  require_bad(std::string("\x01\x00\x08\x03", 4) + good.substr(4), 3, "not an IDX file");
  require_bad(std::string("\x00\x00\x0d\x03", 4) + good.substr(4), 3, "value type 0xd is not supported");
  require_bad(good, 1, "has 3 dimensions, expected 1");
  require_bad(good.substr(0, 10), 3, "truncated IDX header");
  require_bad(good.substr(0, good.size() - 1), 3, "need 8 bytes of data, the file has 7 (truncated)");
  require_bad(good + "x", 3, "(trailing data)");
  require_bad(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, {}), 3, "dimensions are too large");
  std::string gz = gzip_of(good);
  gz.resize(gz.size() / 2);
  require_bad(gz, 3, "corrupt gzip data");
  std::string flipped = gzip_of(good);
  flipped[flipped.size() / 2] ^= 0x55;
  flipped[flipped.size() / 2 + 1] ^= 0x55;
  REQUIRE_THROWS_AS(parse_idx(flipped, "f", 3), InputError);
}

TEST_CASE("idx: data sets check counts, labels and the directory", "[data][idx][reliability]") {
  TempDir d;
  write_synthetic_mnist(d.path(), 30, 10);
  Mnist m = load_mnist(d.path());
  REQUIRE(m.train.count == 30);
  REQUIRE(m.test.count == 10);
  REQUIRE(load_mnist(d.path(), 7, 3).train.count == 7);
  // count mismatch
  write_bytes(d.path() + "/t10k-labels-idx1-ubyte", idx_bytes({9}, std::vector<uint8_t>(9, 1)), false);
  REQUIRE_THROWS_WITH(load_mnist(d.path()), Catch::Contains("has 10 images but") && Catch::Contains("has 9 labels"));
  // label out of range
  write_bytes(d.path() + "/t10k-labels-idx1-ubyte", idx_bytes({10}, std::vector<uint8_t>(10, 12)), false);
  REQUIRE_THROWS_WITH(load_mnist(d.path()), Catch::Contains("label 12 at index 0 is outside 0..9"));
  // missing file, missing directory
  std::remove((d.path() + "/t10k-labels-idx1-ubyte").c_str());
  REQUIRE_THROWS_WITH(load_mnist(d.path()), Catch::Contains("no t10k-labels-idx1-ubyte"));
  REQUIRE_THROWS_WITH(load_mnist(d.path() + "/nope"), Catch::Contains("data directory does not exist"));
}

TEST_CASE("idx: gzip files and the dotted spelling are found", "[data][idx]") {
  TempDir d;
  write_synthetic_mnist(d.path(), 12, 5, true);
  REQUIRE(load_mnist(d.path()).train.count == 12);
  TempDir e;
  write_synthetic_mnist(e.path(), 12, 5);
  std::rename((e.path() + "/train-images-idx3-ubyte").c_str(), (e.path() + "/train-images.idx3-ubyte").c_str());
  REQUIRE(find_idx_file(e.path(), "train-images-idx3-ubyte") == e.path() + "/train-images.idx3-ubyte");
}

TEST_CASE("data: batches are normalised as PyTorch's MNIST examples", "[data]") {
  Dataset d;
  d.count = 2;
  d.rows = d.cols = 28;
  d.pixels.assign(2 * 784, 0);
  d.pixels[784] = 255;
  d.labels = {3, 7};
  Tensor images;
  std::vector<int32_t> labels;
  make_batch(d, {1, 0}, 0, 2, images, labels);
  REQUIRE(images.shape() == Shape{2, 1, 28, 28});
  REQUIRE(labels == std::vector<int32_t>{7, 3});
  REQUIRE(images.at({0, 0, 0, 0}) == Approx((1.0 - 0.1307) / 0.3081));
  REQUIRE(images.at({1, 0, 0, 0}) == Approx(-0.1307 / 0.3081));
}

TEST_CASE("data: epoch order is a seeded permutation, or file order without shuffle", "[data]") {
  Generator a(3), b(3);
  auto o1 = epoch_order(1000, true, a), o2 = epoch_order(1000, true, b);
  REQUIRE(o1 == o2);
  REQUIRE(std::set<int64_t>(o1.begin(), o1.end()).size() == 1000);
  int fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed += o1[static_cast<size_t>(i)] == i;
  REQUIRE(fixed < 20);
  REQUIRE(epoch_order(1000, true, a) != o1);  // the next epoch differs
  auto plain = epoch_order(5, false, a);
  REQUIRE(plain == std::vector<int64_t>{0, 1, 2, 3, 4});
}
