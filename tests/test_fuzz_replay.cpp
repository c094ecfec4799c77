// Replays every seed-corpus and regression input of the fuzz targets (tests/fuzz/) through the
// same entry points the libFuzzer binaries run, so a fixed finding cannot come back unnoticed
// and no clang is needed for it.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "fuzz/targets.h"

namespace fs = std::filesystem;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int replay(const std::string& target, void (*entry)(const std::string&)) {
  int inputs = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz" / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry_file : fs::directory_iterator(dir)) {
      if (!entry_file.is_regular_file()) continue;
      INFO(entry_file.path().string());
      REQUIRE_NOTHROW(entry(slurp(entry_file.path())));
      ++inputs;
    }
  }
  return inputs;
}
}  // namespace

TEST_CASE("fuzz replay: IDX corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("idx", minidl::fuzz::idx) >= 3);
}

TEST_CASE("fuzz replay: safetensors corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("safetensors", minidl::fuzz::safetensors) >= 3);
}

TEST_CASE("fuzz replay: spec corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("spec", minidl::fuzz::spec) >= 6);
}

TEST_CASE("fuzz replay: lr-schedule corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("lr_schedule", minidl::fuzz::lr_schedule) >= 7);
  // The first finding: step:7:2.2e63 was accepted and its lr overflowed to inf at step 14.
  REQUIRE_THROWS_WITH(minidl::parse_lr_schedule("step:7:2222222222222222222222222222222222222222222222222222222222225"),
                      Catch::Contains("gamma must be in (0, 1] (a decay factor)"));
  REQUIRE(minidl::parse_lr_schedule("step:7:1").gamma == 1.0);
}

TEST_CASE("fuzz replay: image corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("image", minidl::fuzz::image) >= 7);
  // The first finding (issue 15): a 258-byte BMP declaring 12 x 3,538,954 pixels cost 0.65 s
  // and 370 MB before it was found uniform. It is now refused from its header.
  const std::string bmp =
      slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/timeout-bmp-12x3538954-258-bytes.bmp");
  REQUIRE(bmp.size() == 258);
  REQUIRE_THROWS_WITH(minidl::decode_image(bmp, "t.bmp"),
                      Catch::Contains("t.bmp: image declares 12x3538954 = 42467448 pixels, more than the limit of 16777216"));
  REQUIRE_THROWS_WITH(minidl::decode_image(bmp, "t.bmp", int64_t{1} << 30),
                      Catch::Contains("need at least 42467706 bytes, but the file has 258"));
  // The second (UBSan in stb_image's JPEG Huffman table builder): 16 code counts adding up to
  // more than 256 wrote past stb's tables. Refused before stb reads the file.
  const std::string jpg =
      slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/ubsan-jpeg-huffman-counts-over-256.jpg");
  REQUIRE_THROWS_WITH(minidl::decode_image(jpg, "h.jpg"), Catch::Contains("h.jpg: corrupt JPEG"));
  // ... also when fill bytes (0xff) precede the JPEG's start marker, which stb accepts.
  const std::string filled =
      slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/ubsan-jpeg-huffman-after-fill-bytes.jpg");
  REQUIRE_THROWS_WITH(minidl::decode_image(filled, "f.jpg"), Catch::Contains("f.jpg: corrupt JPEG"));
  std::string table = std::string("\xff\xd8\xff\xc4\x00\x13\x00", 7) + std::string(16, '\x11');  // 16 x 17 = 272 codes
  table += std::string(272, '\0');
  table[4] = static_cast<char>((2 + 17 + 272) >> 8), table[5] = static_cast<char>((2 + 17 + 272) & 0xff);
  REQUIRE_THROWS_WITH(minidl::decode_image(table, "t.jpg"), Catch::Contains("declares 272 codes, more than the 256 allowed"));
  // A slow unit: a 17-byte TGA (stb reads the missing header bytes as zeros) took 1.4 s.
  const std::string tga = slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/slow-tga-17-bytes.tga");
  REQUIRE_THROWS_WITH(minidl::decode_image(tga, "s.tga"), Catch::Contains("a TGA header alone is 18 bytes"));
  // UBSan in stb's PNM reader: a 10-digit width overflowed its int.
  const std::string pgm = slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/ubsan-pnm-width-overflow.pgm");
  REQUIRE_THROWS_WITH(minidl::decode_image(pgm, "w.pgm"), Catch::Contains("PNM header number of 10 digits"));
  // The third (out of memory): a 12 x 10 PNG whose IDAT chunk declared 2^31 bytes made stb
  // allocate them before reading. Chunks must fit in the file.
  const std::string png =
      slurp(fs::path(MINIDL_SOURCE_DIR) / "tests/fuzz/regressions/image/oom-png-idat-length-past-end.png");
  REQUIRE_THROWS_WITH(minidl::decode_image(png, "o.png"), Catch::Contains("o.png: corrupt PNG: chunk") &&
                                                           Catch::Contains("runs past the end"));
}

TEST_CASE("fuzz replay: CIFAR corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("cifar", minidl::fuzz::cifar) >= 9);
}

TEST_CASE("fuzz replay: image-folder corpus and regression inputs", "[fuzz][reliability]") {
  REQUIRE(replay("image_folder", minidl::fuzz::image_folder) >= 10);
}
