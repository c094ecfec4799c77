// No input costs more than its size warrants (issue 15): headers that declare more than the
// file holds are refused before anything is allocated for them, and what a valid input may
// cost is bounded and measured.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "minidl/data/idx.h"
#include "minidl/data/image.h"
#include "minidl/io/safetensors.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>  // implemented in test_app.cpp
#pragma GCC diagnostic pop

extern char** environ;

using namespace minidl;

namespace {

// Peak resident memory of this process so far, in MB.
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct Child {
  int status;
  double peak_rss_mb;
  std::string err;
};

// Runs the app and returns its exit status and its own peak RSS (wait4's rusage).
Child run_measured(const std::vector<std::string>& args, const std::string& dir) {
  std::vector<std::string> argv_s{MINIDL_APP_PATH, "--blas-core", "library"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string err_path = dir + "/child.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  rusage u{};
  REQUIRE(wait4(pid, &status, 0, &u) == pid);
  std::ifstream in(err_path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, static_cast<double>(u.ru_maxrss) / 1024.0,
          std::string(std::istreambuf_iterator<char>(in), {})};
}

std::string le16(uint32_t v) { return {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff)}; }
std::string le32(uint32_t v) { return le16(v & 0xffff) + le16(v >> 16); }
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 8) & 0xff),
          static_cast<char>(v & 0xff)};
}

std::string tga_header(int type, uint32_t w, uint32_t h) {
  std::string b(18, '\0');
  b[2] = static_cast<char>(type);
  b.replace(12, 2, le16(w));
  b.replace(14, 2, le16(h));
  b[16] = 8;
  return b;
}

// A grey image with a dark square on white, encoded by stb_image_write.
std::string encode(const char* format, int w, int h) {
  std::vector<unsigned char> px(static_cast<size_t>(w) * h, 255);
  for (int y = h / 4; y < 3 * h / 4; ++y)
    for (int x = w / 3; x < 2 * w / 3; ++x) px[static_cast<size_t>(y) * w + x] = 0;
  std::string out;
  auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); };
  if (!std::strcmp(format, "png")) stbi_write_png_to_func(sink, &out, w, h, 1, px.data(), w);
  if (!std::strcmp(format, "bmp")) stbi_write_bmp_to_func(sink, &out, w, h, 1, px.data());
  if (!std::strcmp(format, "tga")) stbi_write_tga_to_func(sink, &out, w, h, 1, px.data());
  if (!std::strcmp(format, "jpg")) stbi_write_jpg_to_func(sink, &out, w, h, 1, px.data(), 90);
  if (!std::strcmp(format, "pgm")) out = "P5\n# a comment\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n" +
                                         std::string(px.begin(), px.end());
  return out;
}

std::string gzip(const std::string& raw) {
  uLongf n = compressBound(static_cast<uLong>(raw.size())) + 64;
  std::string out(n, '\0');
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

TEST_CASE("images: a header declaring more pixels than the file can hold is refused before decoding", "[reliability][image]") {
  using Catch::Contains;
  // Each would have made stb allocate (and fill) the declared image: the amplification is the
  // declared pixel bytes over the file's size.
  struct Case {
    const char* name;
    std::string bytes;
    const char* why;
  };
  std::string png = encode("png", 40, 40);
  png.replace(16, 4, be32(4000));  // IHDR: 4000 x 4000 grey, 16 Mpixel in a ~200-byte file
  png.replace(20, 4, be32(4000));
  std::string bmp = encode("bmp", 4, 4).substr(0, 54);  // header only, 4 x 4 -> 2000 x 2000
  bmp.replace(18, 4, le32(2000));
  bmp.replace(22, 4, le32(2000));
  std::string jpg;
  {
    std::vector<unsigned char> px(40 * 40, 200);
    stbi_write_jpg_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); },
                           &jpg, 40, 40, 1, px.data(), 90);
    const size_t sof = jpg.find("\xff\xc0");
    REQUIRE(sof != std::string::npos);
    jpg[sof + 5] = '\x0f', jpg[sof + 6] = '\xa0';  // height 4000
    jpg[sof + 7] = '\x0f', jpg[sof + 8] = '\xa0';  // width 4000
  }
  std::string gif;
  {
    std::ifstream in(MINIDL_SOURCE_DIR "/tests/fuzz/corpus/image/rgb.gif", std::ios::binary);
    gif.assign(std::istreambuf_iterator<char>(in), {});
    REQUIRE(gif.size() > 13);
    gif.replace(6, 2, le16(4000));  // logical screen 4000 x 4000
    gif.replace(8, 2, le16(4000));
  }
  std::vector<Case> cases{
      {"JPEG 4000x4000", jpg, "a JPEG codes each 8x8 block in at least one bit"},
      {"GIF 4000x4000", gif, "GIF's LZW codes"},
      {"PSD 4000x4000", std::string("8BPS\0\x01\0\0\0\0\0\0\0\x03", 14) + be32(4000) + be32(4000) + std::string("\0\x08\0\x03", 4) +
                            std::string(40, '\0'),
       "PackBits"},
      {"P5 4000x4000", "P5\n4000 4000\n255\n" + std::string(10, '\x7f'), "PNM stores its pixels uncompressed"},
      {"P6 3000x3000 16-bit", "P6 3000 3000 65535\n" + std::string(10, '\x7f'), "PNM stores its pixels uncompressed"},
      {"TGA 4000x4000", tga_header(3, 4000, 4000) + std::string(10, '\0'), "TGA without RLE stores its pixels"},
      {"TGA RLE 4000x4000", tga_header(11, 4000, 4000) + std::string(10, '\0'), "RLE packets hold at most 128"},
      {"BMP 2000x2000 (24 bit)", bmp, "BMP stores its pixels uncompressed"},
      // Found slow by fuzz_image (2 s each under ASan): stb reads header bytes past the end as
      // zeros (no compression), and any compression but RLE as uncompressed pixels.
      {"BMP 18x655498 cut inside its header", bmp.substr(0, 18) + le32(18) + le32(655498) + std::string("\x01\0\x08\0\0", 5), "BMP stores its pixels uncompressed"},
      {"BMP 18x655498, compression 0xc3c2bab9", bmp.substr(0, 18) + le32(18) + le32(655498) + std::string("\x01\0\x08\0", 4) +
                                                      le32(0xc3c2bab9u), "BMP stores its pixels uncompressed"},
      {"PNG 4000x4000", png, "deflate compresses at most 1032:1"},
  };
  for (const Case& c : cases) {
    INFO(c.name << ": " << c.bytes.size() << " bytes");
    const double before = peak_rss_mb();
    REQUIRE_THROWS_AS(decode_image(c.bytes, c.name), InputError);
    REQUIRE_THROWS_WITH(decode_image(c.bytes, c.name), Contains(c.name) && Contains("which need at least") && Contains(c.why));
    REQUIRE(peak_rss_mb() - before < 4.0);  // nothing was allocated for the declared pixels
  }
  // Over the pixel limit (16 Mpixel by default, or as given)
  REQUIRE_THROWS_WITH(decode_image("P5\n5000 4000\n255\n" + std::string(20000000, '\0'), "big.pgm"),
                      Contains("big.pgm: image declares 5000x4000 = 20000000 pixels, more than the limit of 16777216"));
  REQUIRE_THROWS_WITH(decode_image(encode("png", 50, 40), "small.png", 1999), Contains("2000 pixels, more than the limit of 1999"));
}

TEST_CASE("images: valid files of every checked format still decode", "[reliability][image]") {
  for (const char* format : {"png", "bmp", "tga", "pgm", "jpg"}) {
    for (int w : {1, 3, 28, 33}) {
      INFO(format << " " << w << "x17");
      const std::string bytes = encode(format, w, 17);
      GrayImage img = decode_image(bytes, format);
      REQUIRE(img.width == w);
      REQUIRE(img.height == 17);
      REQUIRE(img.pixels[0] >= 250.0f);  // white (JPEG: nearly)
    }
  }
  stbi_write_tga_with_rle = 0;  // and the uncompressed TGA
  GrayImage img = decode_image(encode("tga", 30, 20), "plain.tga");
  stbi_write_tga_with_rle = 1;
  REQUIRE(img.pixels[static_cast<size_t>(10 * 30 + 15)] == 0.0f);
  // A BMP whose last row lacks its padding (some writers omit it) is accepted.
  std::string bmp = encode("bmp", 5, 3);  // 24-bit rows of 15 bytes + 1 padding
  REQUIRE_NOTHROW(decode_image(bmp.substr(0, bmp.size() - 1), "short-pad.bmp"));
}

TEST_CASE("images: fuzz findings in stb are refused or handled (undefined Huffman table, 16-bit PNM)", "[reliability][image]") {
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string dir = MINIDL_SOURCE_DIR "/tests/fuzz/regressions/image/";
  // A scan naming AC table 3, which no DHT defines: stb would index an uninitialised table.
  REQUIRE_THROWS_WITH(decode_image(slurp(dir + "asan-jpeg-scan-uses-undefined-huffman-table.jpg"), "t.jpg"),
                      Catch::Matchers::Contains("t.jpg: corrupt JPEG: a scan uses Huffman table AC 3, which no DHT segment before it defines"));
  // 16-bit PGM: decoded through the file's own channel count, 16-bit samples reduced to 8 bits
  // (v * 255 / 65535 rounded as stb does: the high byte), no overflow.
  std::string pgm = "P5 3 1 65535\n";
  for (unsigned v : {0u, 0x8000u, 0xffffu}) pgm += std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
  const GrayImage img = decode_image(pgm, "16.pgm");
  REQUIRE(img.pixels.size() == 3);
  CHECK(img.pixels[0] == 0.0f);
  CHECK(img.pixels[1] == 128.0f);
  CHECK(img.pixels[2] == 255.0f);
  REQUIRE_NOTHROW(decode_image(slurp(dir + "asan-pgm-16-bit-overflow-in-stb-conversion.pgm"), "f.pgm"));
}

TEST_CASE("predict: peak memory is bounded by the model plus 24 bytes per allowed pixel", "[reliability][image]") {
  TempDir d;
  testing::write_synthetic_mnist(d.path(), 64, 16);
  const std::string ckpt = d.path() + "/m.safetensors";
  REQUIRE(run_measured({"train", "--data", d.path(), "--steps", "1", "--quiet", "--save", ckpt}, d.path()).status == 0);
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(d.path() + "/" + name, std::ios::binary) << bytes;
    return d.path() + "/" + name;
  };
  const Child small = run_measured({"predict", "--checkpoint", ckpt, write("small.png", encode("png", 60, 60))}, d.path());
  INFO(small.err);
  REQUIRE(small.status == 0);
  // The fuzz finding, with the pixel limit raised out of its way: refused from its header.
  const Child bomb = run_measured({"predict", "--checkpoint", ckpt, "--max-pixels", "1000000000",
                                   MINIDL_SOURCE_DIR "/tests/fuzz/regressions/image/timeout-bmp-12x3538954-258-bytes.bmp"},
                                  d.path());
  REQUIRE(bomb.status == 2);
  REQUIRE(bomb.err.find("need at least 42467706 bytes, but the file has 258") != std::string::npos);
  REQUIRE(bomb.peak_rss_mb < small.peak_rss_mb + 8);  // was 370 MB
  // The largest image allowed by default, 4096 x 4096 = 16 Mpixel, decoded and classified.
  const std::string big = write("big.pgm", encode("pgm", 4096, 4096));
  const Child at_limit = run_measured({"predict", "--checkpoint", ckpt, big}, d.path());
  INFO(at_limit.err);
  REQUIRE(at_limit.status == 0);
  const double bound = small.peak_rss_mb + (kImageBytesPerPixel * double(kMaxImagePixels) + 16.0 * (1 << 20)) / (1 << 20);
  WARN("predict peak RSS: small image " << small.peak_rss_mb << " MB, 16-Mpixel PGM " << at_limit.peak_rss_mb
                                        << " MB (bound " << bound << " MB)");
  REQUIRE(at_limit.peak_rss_mb <= bound);
  // The costliest format stb decodes at that size: 16-bit RGBA PNG (measured 16 bytes a pixel).
  {
    const int w = 4096, h = 4096;
    std::string raw;
    raw.reserve(static_cast<size_t>(h) * (1 + w * 8));
    for (int y = 0; y < h; ++y) {
      raw.push_back('\0');  // filter: none
      for (int x = 0; x < w; ++x) raw.append(y > h / 4 && y < 3 * h / 4 && x > w / 3 && x < 2 * w / 3 ? std::string(6, '\0') + "\xff\xff"
                                                                                                       : std::string(8, '\xff'));
    }
    auto chunk = [](const std::string& type, const std::string& data) {
      const uLong crc = crc32(crc32(0, reinterpret_cast<const Bytef*>(type.data()), 4), reinterpret_cast<const Bytef*>(data.data()),
                              static_cast<uInt>(data.size()));
      return be32(static_cast<uint32_t>(data.size())) + type + data + be32(static_cast<uint32_t>(crc));
    };
    uLongf n = compressBound(static_cast<uLong>(raw.size()));
    std::string z(n, '\0');
    REQUIRE(compress2(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 1) == Z_OK);
    z.resize(n);
    raw = std::string();
    const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) +
                            chunk("IHDR", be32(w) + be32(h) + std::string("\x10\x06\0\0\0", 5)) + chunk("IDAT", z) +
                            chunk("IEND", "");
    const Child rgba = run_measured({"predict", "--checkpoint", ckpt, write("rgba16.png", png)}, d.path());
    INFO(rgba.err);
    REQUIRE(rgba.status == 0);
    WARN("predict peak RSS, 16-Mpixel 16-bit RGBA PNG: " << rgba.peak_rss_mb << " MB");
    REQUIRE(rgba.peak_rss_mb <= bound);
  }
  // One pixel more is refused before decoding.
  const Child over = run_measured({"predict", "--checkpoint", ckpt, "--max-pixels", "16777215", big}, d.path());
  REQUIRE(over.status == 2);
  REQUIRE(over.err.find("more than the limit of 16777215") != std::string::npos);
}

TEST_CASE("IDX: a header cannot make the reader allocate beyond what the file holds", "[reliability][data]") {
  using Catch::Contains;
  // Plain: 16 bytes declaring 60000 x 28 x 28 (47 MB: a 2.9-million-fold amplification).
  std::string header = std::string("\0\0\x08\x03", 4) + be32(60000) + be32(28) + be32(28);
  double before = peak_rss_mb();
  REQUIRE_THROWS_WITH(parse_idx(header, "h.idx", 3), Contains("need 47040000 bytes of data, the file has 0 (truncated)"));
  REQUIRE(peak_rss_mb() - before < 4.0);
  // Gzip bomb: a header declaring 10 images, then 256 MB of zeros, compressed to about 250 KB
  // (a thousand-fold amplification before the header bound).
  std::string bomb_raw = std::string("\0\0\x08\x03", 4) + be32(10) + be32(28) + be32(28) + std::string(256u << 20, '\0');
  const std::string bomb = gzip(bomb_raw);
  bomb_raw = std::string();
  before = peak_rss_mb();
  REQUIRE_THROWS_WITH(parse_idx(bomb, "bomb.gz", 3), Contains("expands to more than the 7856 bytes its IDX header declares"));
  REQUIRE(peak_rss_mb() - before < 8.0);
  // Gzip with a header declaring more than the reader accepts: refused as soon as it is read.
  const std::string huge = gzip(std::string("\0\0\x08\x03", 4) + be32(60000) + be32(60000) + be32(28) + std::string(1000, '\0'));
  REQUIRE_THROWS_WITH(parse_idx(huge, "huge.gz", 3), Contains("declares more than 2147483648 bytes"));
}

TEST_CASE("safetensors: a header cannot make the reader allocate or parse beyond its bounds", "[reliability][checkpoint]") {
  using Catch::Contains;
  auto file = [](const std::string& header, const std::string& data = "") {
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out + header + data;
  };
  double before = peak_rss_mb();
  // 2^62-byte header length in a 16-byte file
  std::string lie(8, '\0');
  lie[7] = 0x40;
  REQUIRE_THROWS_WITH(decode_safetensors(lie + "{}      ", "lie.st"), Contains("header length 4611686018427387904 exceeds the file"));
  // A 4 MiB header: more than the 1 MiB accepted (minidl's own are a few KB)
  REQUIRE_THROWS_WITH(decode_safetensors(file("{" + std::string(4u << 20, ' ') + "}"), "wide.st"),
                      Contains("header length 4194306 is more than the 1048576 accepted"));
  // 500,000 levels of nesting in 1 MB: nlohmann would build half a million nested values
  // (about 40 MB) before we saw the shape; refused at the fourth level.
  REQUIRE_THROWS_WITH(decode_safetensors(file(std::string(500000, '[') + std::string(500000, ']')), "deep.st"),
                      Contains("nests deeper than the 3 levels"));
  REQUIRE_THROWS_WITH(decode_safetensors(file(R"({"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", "1234"), "d.st"),
                      Contains("nests deeper"));
  // A tensor declaring 2^32 floats with 4 bytes of data
  REQUIRE_THROWS_WITH(decode_safetensors(file(R"({"a":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,4]}})", "1234"), "big.st"),
                      Contains("big.st"));
  REQUIRE(peak_rss_mb() - before < 24.0);  // the 4 MiB header itself is the largest thing held
}
