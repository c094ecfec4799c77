#include "minidl/data/image.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "minidl/data/idx.h"
#include "minidl/io/file.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
// The formats minidl documents; stb's HDR and PIC readers are left out.
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_TGA
#define STBI_ONLY_PSD
#define STBI_ONLY_PNM
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wpedantic"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace minidl {

namespace {

uint32_t le16(const std::string& b, size_t at) {
  return uint32_t{static_cast<unsigned char>(b[at])} | uint32_t{static_cast<unsigned char>(b[at + 1])} << 8;
}
uint32_t le32(const std::string& b, size_t at) { return le16(b, at) | le16(b, at + 2) << 16; }
uint32_t be32(const std::string& b, size_t at) {
  return uint32_t{static_cast<unsigned char>(b[at])} << 24 | uint32_t{static_cast<unsigned char>(b[at + 1])} << 16 |
         uint32_t{static_cast<unsigned char>(b[at + 2])} << 8 | uint32_t{static_cast<unsigned char>(b[at + 3])};
}

// The numbers of a binary PNM header ("P5 width height maxval"), white space and comments
// skipped: as many as could be read (count), the longest in digits, and where the last ended.
// Values stop growing at 2^40 (check_pnm_numbers refuses more than 8 digits before this matters).
struct PnmHeader {
  uint64_t values[3] = {0, 0, 0};
  int count = 0;
  size_t longest = 0, end = 2;
};
PnmHeader read_pnm_header(const std::string& b) {
  PnmHeader h;
  const size_t n = b.size();
  size_t i = 2;
  for (int k = 0; k < 3; ++k) {
    for (;;) {  // white space and comments
      while (i < n && std::isspace(static_cast<unsigned char>(b[i]))) ++i;
      if (i < n && b[i] == '#') {
        while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
        continue;
      }
      break;
    }
    size_t digits = 0;
    for (; i < n && std::isdigit(static_cast<unsigned char>(b[i])); ++i, ++digits)
      if (h.values[k] < (uint64_t{1} << 40)) h.values[k] = h.values[k] * 10 + static_cast<uint64_t>(b[i] - '0');
    if (digits == 0) break;
    h.longest = std::max(h.longest, digits);
    h.count = k + 1;
    h.end = i;
  }
  return h;
}

// The least number of bytes a file of this format needs for the pixels its header declares
// (0 when the format is not one this checks, or the header is too short to tell: stb then
// refuses it). `why` says what the bound comes from.
uint64_t least_file_bytes(const std::string& b, uint64_t width, uint64_t height, const char*& why) {
  const size_t n = b.size();
  const uint64_t pixels = width * height;
  if (n >= 3 && static_cast<unsigned char>(b[0]) == 0xff && static_cast<unsigned char>(b[1]) == 0xd8) {  // JPEG
    // Every 8x8 block of the full-resolution component has a DC coefficient, coded with a
    // Huffman code of at least one bit, baseline or progressive.
    why = "a JPEG codes each 8x8 block in at least one bit";
    return ((width + 7) / 8) * ((height + 7) / 8) / 8;
  }
  if (n >= 6 && b.compare(0, 3, "GIF") == 0) {
    // LZW codes are at least 3 bits, and the k-th code since a clear expands to at most k + 1
    // pixels (4096 at most): c codes give at most sum_k min(k + 2, 4096) pixels.
    why = "GIF's LZW codes are at least 3 bits and each expands to at most 4096 pixels";
    const uint64_t ramp = 4094, ramp_pixels = ramp * (ramp + 3) / 2;  // codes 0..4093 give k + 2 pixels each
    uint64_t codes;
    if (pixels <= ramp_pixels) {
      codes = static_cast<uint64_t>(std::ceil((std::sqrt(9.0 + 8.0 * static_cast<double>(pixels)) - 3.0) / 2.0));
    } else {
      codes = ramp + (pixels - ramp_pixels + 4095) / 4096;
    }
    return codes * 3 / 8;
  }
  if (n >= 26 && b.compare(0, 4, "8BPS") == 0) {  // PSD: raw, or PackBits with at most 128 bytes per 2
    why = "PSD's PackBits runs hold at most 64 samples per byte";
    return pixels / 64;
  }
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') {  // BMP
    // stb reads header bytes past the end of the file as zeros (and then the pixels as zeros):
    // read the header the same way, so a file cut short inside its header is bounded too.
    std::string head = b.substr(0, 64);
    head.resize(64, '\0');
    const uint64_t offset = le32(head, 10), dib = le32(head, 14);
    uint64_t w, h, bpp, compression = 0;
    if (dib == 12) {
      w = le16(head, 18), h = le16(head, 20), bpp = le16(head, 24);
    } else {
      const auto sw = static_cast<int32_t>(le32(head, 18)), sh = static_cast<int32_t>(le32(head, 22));
      w = static_cast<uint64_t>(std::abs(static_cast<int64_t>(sw)));
      h = static_cast<uint64_t>(std::abs(static_cast<int64_t>(sh)));
      bpp = le16(head, 28);
      compression = le32(head, 30);
    }
    // RLE (1, 2) stb refuses at once; any other value it reads as uncompressed pixels.
    if (compression == 1 || compression == 2) return 0;
    if (w == 0 || h == 0 || bpp == 0) return 0;
    why = "BMP stores its pixels uncompressed";
    const uint64_t row = (bpp * w + 31) / 32 * 4, last_row = (bpp * w + 7) / 8;  // the last row's padding may be absent
    return offset + row * (h - 1) + last_row;
  }
  if (n >= 3 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) {  // binary PGM / PPM
    const PnmHeader h = read_pnm_header(b);
    if (h.count < 3) return 0;
    why = "PNM stores its pixels uncompressed";
    const uint64_t channels = b[1] == '5' ? 1 : 3, sample = h.values[2] > 255 ? 2 : 1;
    return h.end + 1 + h.values[0] * h.values[1] * channels * sample;  // + the white space before the pixels
  }
  if (n >= 3 && n < 18 && (b[2] == 1 || b[2] == 2 || b[2] == 3 || b[2] == 9 || b[2] == 10 || b[2] == 11) &&
      (b[1] == 0 || b[1] == 1)) {
    // A TGA shorter than its 18-byte header: stb reads the rest as zeros (a 17-byte file took
    // 1.4 s, found by fuzz_image as a slow unit)
    why = "a TGA header alone is 18 bytes";
    return 18;
  }
  if (n >= 18 && (b[2] == 1 || b[2] == 2 || b[2] == 3 || b[2] == 9 || b[2] == 10 || b[2] == 11) &&
      (b[1] == 0 || b[1] == 1)) {  // TGA (stb's test: image type and colour-map type)
    const uint64_t id = static_cast<unsigned char>(b[0]), cmap = b[1] ? le16(b, 5) * ((static_cast<unsigned char>(b[7]) + 7u) / 8) : 0;
    const uint64_t w = le16(b, 12), h = le16(b, 14), pixel = (static_cast<unsigned char>(b[16]) + 7u) / 8;
    if (w == 0 || h == 0 || pixel == 0) return 0;
    if (b[2] < 9) {
      why = "TGA without RLE stores its pixels uncompressed";
      return 18 + id + cmap + w * h * pixel;
    }
    why = "TGA's RLE packets hold at most 128 pixels each";
    return 18 + id + cmap + (w * h + 127) / 128 * (1 + pixel);
  }
  if (n >= 26 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0 && b.compare(12, 4, "IHDR") == 0) {
    const uint64_t w = be32(b, 16), h = be32(b, 20), depth = static_cast<unsigned char>(b[24]);
    const int type = static_cast<unsigned char>(b[25]);
    const uint64_t channels = type == 2 ? 3 : type == 4 ? 2 : type == 6 ? 4 : 1;
    why = "PNG's deflate compresses at most 1032:1";
    return (h * (1 + (w * channels * depth + 7) / 8)) / 1032;
  }
  return 0;
}

// stb_image (Debian's 2022 snapshot) builds a JPEG Huffman table from the 16 code counts of a
// DHT segment without checking that they add up to at most 256: a larger sum writes past its
// 257-entry arrays (found by fuzz_image under UBSan; tests/fuzz/regressions/image/). Every DHT
// segment is checked here before stb sees the file.
void check_jpeg_huffman_tables(const std::string& b, const std::string& source) {
  const size_t n = b.size();
  auto u8 = [&](size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(b[i])); };
  // stb takes a JPEG's SOI after any number of 0xff fill bytes
  size_t start = 0;
  while (start < n && u8(start) == 0xff) ++start;
  if (start == 0 || start >= n || u8(start) != 0xd8) return;
  size_t i = start + 1;
  bool defined[8] = {};  // DC tables 0-3, AC tables 0-3
  bool progressive = false;
  while (i + 1 < n) {
    if (u8(i) != 0xff) {  // entropy-coded data: on to the next marker
      ++i;
      continue;
    }
    const unsigned m = u8(i + 1);
    if (m == 0xff) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {  // stuffed byte, TEM, RSTn, SOI: no length
      i += 2;
      continue;
    }
    if (m == 0xd9 || i + 4 > n) break;  // EOI, or no room for a length
    const size_t len = u8(i + 2) << 8 | u8(i + 3);
    if (m == 0xc0 || m == 0xc1 || m == 0xc2) progressive = m == 0xc2;
    if (m == 0xda && i + 5 <= n) {
      // A scan may only use tables defined before it: stb leaves an undefined table's memory
      // uninitialised and indexes with it (SEGV found by fuzz_image; regression input).
      const size_t ns = u8(i + 4);
      if (i + 5 + 2 * ns + 3 <= n) {
        const unsigned ss = u8(i + 5 + 2 * ns), ah = u8(i + 7 + 2 * ns) >> 4;
        for (size_t k = 0; k < ns; ++k) {
          const unsigned tables = u8(i + 6 + 2 * k), dc = tables >> 4, ac = tables & 15;
          const bool needs_dc = !progressive || (ss == 0 && ah == 0), needs_ac = !progressive || ss > 0;
          const bool bad_dc = needs_dc && (dc > 3 || !defined[dc]), bad_ac = needs_ac && (ac > 3 || !defined[4 + ac]);
          if (bad_dc || bad_ac)
            throw InputError(detail::concat(source, ": corrupt JPEG: a scan uses Huffman table ", bad_dc ? "DC " : "AC ",
                                            bad_dc ? dc : ac, ", which no DHT segment before it defines"));
        }
      }
    }
    if (m == 0xc4) {
      if (len < 2 || i + 2 + len > n)
        throw InputError(detail::concat(source, ": corrupt JPEG: a Huffman table segment of ", len,
                                        " bytes runs past the end of the file"));
      size_t p = i + 4;
      const size_t end = i + 2 + len;
      while (p < end) {
        if (p + 17 > end) throw InputError(source + ": corrupt JPEG: truncated Huffman table");
        unsigned codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += u8(p + k);
        if (codes > 256)
          throw InputError(detail::concat(source, ": corrupt JPEG: a Huffman table declares ", codes,
                                          " codes, more than the 256 allowed"));
        if (p + 17 + codes > end) throw InputError(source + ": corrupt JPEG: truncated Huffman table");
        const unsigned cls = u8(p) >> 4, id = u8(p) & 15;
        if (cls <= 1 && id <= 3) defined[cls * 4 + id] = true;
        p += 17 + codes;
      }
    }
    i += 2 + len;
  }
}

// stb_image grows its buffer for a PNG's IDAT data to the chunk's declared length before reading
// it: a 100-byte file declaring a 2 GB chunk made it allocate 2 GB (found by fuzz_image as an
// out-of-memory; tests/fuzz/regressions/image/). Every chunk must fit in the file.
void check_png_chunks(const std::string& b, const std::string& source) {
  if (b.size() < 8 || b.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return;
  size_t i = 8;
  while (i + 8 <= b.size()) {
    const uint64_t len = be32(b, i);
    const std::string type = b.substr(i + 4, 4);
    if (i + 12 + len > b.size())
      throw InputError(detail::concat(source, ": corrupt PNG: chunk '", type, "' of ", len, " bytes runs past the end of the ",
                                      b.size(), "-byte file"));
    if (type == "IEND") break;
    i += 12 + len;
  }
}

// stb_image reads a PNM's width, height and maximum value into an int without an overflow check
// (signed overflow, found by fuzz_image under UBSan). Numbers of more than 8 digits are refused
// first (no image within the pixel limits needs them).
void check_pnm_numbers(const std::string& b, const std::string& source) {
  if (b.size() < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return;
  const PnmHeader h = read_pnm_header(b);
  if (h.longest > 8)
    throw InputError(detail::concat(source, ": PNM header number of ", h.longest, " digits, more than the 8 accepted"));
}

}  // namespace

Image decode_image_channels(const std::string& bytes, const std::string& source, int channels, int64_t max_pixels) {
  MINIDL_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3, got ", channels);
  if (bytes.empty()) throw InputError(source + ": empty file, expected an image");
  if (bytes.size() > static_cast<size_t>(kMaxImageFileBytes))
    throw InputError(detail::concat(source, ": file has ", bytes.size(), " bytes, more than the ", kMaxImageFileBytes,
                                    " accepted for an image"));
  check_jpeg_huffman_tables(bytes, source);
  check_png_chunks(bytes, source);
  check_pnm_numbers(bytes, source);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, file_channels = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &file_channels))
    throw InputError(source + ": not a readable image (" + stbi_failure_reason() +
                     "); expected PNG, JPEG, BMP, GIF, TGA, PSD or PNM");
  if (w <= 0 || h <= 0) throw InputError(detail::concat(source, ": image has size ", w, "x", h, ", expected at least 1x1"));
  if (static_cast<int64_t>(w) * h > max_pixels)
    throw InputError(detail::concat(source, ": image declares ", w, "x", h, " = ", static_cast<int64_t>(w) * h,
                                    " pixels, more than the limit of ", max_pixels,
                                    " (minidl predict --max-pixels raises it)"));
  const char* why = "";
  const uint64_t least = least_file_bytes(bytes, static_cast<uint64_t>(w), static_cast<uint64_t>(h), why);
  if (least > bytes.size())
    throw InputError(detail::concat(source, ": image declares ", w, "x", h, " pixels, which need at least ", least,
                                    " bytes, but the file has ", bytes.size(), " (", why, "): truncated or corrupt"));
  // The file's own channels, 8 bits each (stb reduces 16-bit images). Not stb's conversion to
  // grey + alpha: for a 16-bit PNM stb applies its 8-bit channel conversion to 16-bit samples
  // and then reads past the converted buffer (heap overflow found by fuzz_image; regression
  // input in tests/fuzz/regressions/image/). The conversion below uses stb's own formulas
  // (luma (77 R + 150 G + 29 B) >> 8, alpha 255 when absent).
  // stb reads a 16-bit PNM's big-endian samples in host (little-endian) order and keeps their
  // low byte; swapping each pair first gives it the high byte, the 8-bit value.
  std::string swapped;
  if (bytes.size() > 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6')) {
    const PnmHeader ph = read_pnm_header(bytes);
    if (ph.count == 3 && ph.values[2] > 255 && ph.end < bytes.size()) {
      swapped = bytes;
      for (size_t k = ph.end + 1; k + 1 < swapped.size(); k += 2) std::swap(swapped[k], swapped[k + 1]);
      data = reinterpret_cast<const stbi_uc*>(swapped.data());
    }
  }
  int got = 0;
  stbi_uc* pixels = stbi_load_from_memory(data, len, &w, &h, &got, 0);
  if (!pixels) throw InputError(source + ": cannot decode the image (" + stbi_failure_reason() + ")");
  if (got < 1 || got > 4) {
    stbi_image_free(pixels);
    throw InputError(detail::concat(source, ": cannot decode the image (", got, " channels)"));
  }
  Image image;
  image.width = w;
  image.height = h;
  image.channels = channels;
  const size_t plane = static_cast<size_t>(w) * static_cast<size_t>(h);
  image.pixels.resize(plane * static_cast<size_t>(channels));
  const size_t n = static_cast<size_t>(got);
  for (size_t i = 0; i < plane; ++i) {
    const stbi_uc* px = pixels + n * i;
    const unsigned a = n == 2 ? px[1] : n == 4 ? px[3] : 255u;
    const float alpha = static_cast<float>(a) / 255.0f;
    auto on_white = [&](unsigned v) { return alpha * static_cast<float>(v) + (1.0f - alpha) * 255.0f; };
    if (channels == 1) {
      image.pixels[i] = on_white(n >= 3 ? (px[0] * 77u + px[1] * 150u + px[2] * 29u) >> 8 : px[0]);
    } else {
      for (size_t c = 0; c < 3; ++c) image.pixels[c * plane + i] = on_white(n >= 3 ? px[c] : px[0]);
    }
  }
  stbi_image_free(pixels);
  return image;
}

GrayImage decode_image(const std::string& bytes, const std::string& source, int64_t max_pixels) {
  Image image = decode_image_channels(bytes, source, 1, max_pixels);
  return {image.width, image.height, std::move(image.pixels)};
}

Image load_image_channels(const std::string& path, int channels, int64_t max_pixels) {
  return decode_image_channels(read_file(path, kMaxImageFileBytes), path, channels, max_pixels);
}

GrayImage load_image(const std::string& path, int64_t max_pixels) {
  return decode_image(read_file(path, kMaxImageFileBytes), path, max_pixels);
}

namespace {

// Area-averaging resize of src (w x h) to (nw x nh).
std::vector<float> resize_area(const std::vector<float>& src, int w, int h, int nw, int nh) {
  std::vector<float> out(static_cast<size_t>(nw) * static_cast<size_t>(nh), 0.0f);
  const double sx = static_cast<double>(w) / nw, sy = static_cast<double>(h) / nh;
  for (int oy = 0; oy < nh; ++oy) {
    const double y0 = oy * sy, y1 = (oy + 1) * sy;
    for (int ox = 0; ox < nw; ++ox) {
      const double x0 = ox * sx, x1 = (ox + 1) * sx;
      double total = 0.0, area = 0.0;
      for (int y = static_cast<int>(y0); y < std::min(h, static_cast<int>(std::ceil(y1))); ++y) {
        const double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        if (wy <= 0) continue;
        for (int x = static_cast<int>(x0); x < std::min(w, static_cast<int>(std::ceil(x1))); ++x) {
          const double wx = std::min<double>(x + 1, x1) - std::max<double>(x, x0);
          if (wx <= 0) continue;
          total += wx * wy * src[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)];
          area += wx * wy;
        }
      }
      out[static_cast<size_t>(oy) * static_cast<size_t>(nw) + static_cast<size_t>(ox)] =
          area > 0 ? static_cast<float>(total / area) : 0.0f;
    }
  }
  return out;
}

}  // namespace

Image resize_image(const Image& image, int width, int height) {
  MINIDL_CHECK(width > 0 && height > 0, "resize_image: size must be positive, got ", width, "x", height);
  const size_t plane = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  Image out{width, height, image.channels, {}};
  out.pixels.reserve(static_cast<size_t>(width) * static_cast<size_t>(height) * static_cast<size_t>(image.channels));
  for (int c = 0; c < image.channels; ++c) {
    const std::vector<float> src(image.pixels.begin() + static_cast<std::ptrdiff_t>(c * plane),
                                 image.pixels.begin() + static_cast<std::ptrdiff_t>((c + 1) * plane));
    const std::vector<float> r = resize_area(src, image.width, image.height, width, height);
    out.pixels.insert(out.pixels.end(), r.begin(), r.end());
  }
  return out;
}

Tensor image_to_input(const Image& image, const std::vector<int64_t>& shape, const std::vector<float>& mean,
                      const std::vector<float>& std) {
  MINIDL_CHECK(shape.size() == 3 && image.channels == shape[0] && mean.size() == static_cast<size_t>(shape[0]) &&
                   std.size() == static_cast<size_t>(shape[0]),
               "image_to_input: the image has ", image.channels, " channels, the model takes ", shape_to_string(shape));
  const Image r = resize_image(image, static_cast<int>(shape[2]), static_cast<int>(shape[1]));
  Tensor out = Tensor::empty({1, shape[0], shape[1], shape[2]});
  const size_t plane = static_cast<size_t>(shape[1] * shape[2]);
  for (size_t c = 0; c < static_cast<size_t>(shape[0]); ++c)
    for (size_t k = 0; k < plane; ++k)
      out.data()[c * plane + k] = (std::round(r.pixels[c * plane + k]) / 255.0f - mean[c]) / std[c];
  return out;
}

Tensor mnist_preprocess(const GrayImage& image, const std::string& source) {
  const int w = image.width, h = image.height;
  MINIDL_CHECK(w > 0 && h > 0 && image.pixels.size() == static_cast<size_t>(w) * static_cast<size_t>(h),
               "mnist_preprocess: inconsistent image size");
  // Background = the median of the border; light background -> invert to white on black.
  std::vector<float> border;
  for (int x = 0; x < w; ++x) {
    border.push_back(image.pixels[static_cast<size_t>(x)]);
    border.push_back(image.pixels[static_cast<size_t>(h - 1) * w + x]);
  }
  for (int y = 0; y < h; ++y) {
    border.push_back(image.pixels[static_cast<size_t>(y) * w]);
    border.push_back(image.pixels[static_cast<size_t>(y) * w + w - 1]);
  }
  std::nth_element(border.begin(), border.begin() + static_cast<std::ptrdiff_t>(border.size() / 2), border.end());
  const float background = border[border.size() / 2];
  const bool invert = background > 127.5f;
  // Ink levels are computed on the fly, never stored for the whole image: peak memory stays
  // at the image plus the digit's bounding box (see kImageBytesPerPixel).
  auto ink_of = [&](size_t i) { return invert ? 255.0f - image.pixels[i] : image.pixels[i]; };
  float lo = 255.0f, hi = 0.0f;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    lo = std::min(lo, ink_of(i));
    hi = std::max(hi, ink_of(i));
  }
  if (hi - lo < 1.0f) throw InputError(source + ": the image is uniform; expected a digit on a plain background");
  // Stretch to 0..255 with the background at 0.
  const float floor_level = invert ? 255.0f - background : background;
  const float span = std::max(hi - floor_level, 1.0f);
  auto ink = [&](size_t i) { return std::clamp((ink_of(i) - floor_level) / span * 255.0f, 0.0f, 255.0f); };
  // Bounding box of the ink.
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (ink(static_cast<size_t>(y) * w + x) > 25.0f) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
  if (x1 < 0) throw InputError(source + ": no digit found (no pixel stands out from the background)");
  const int cw = x1 - x0 + 1, ch = y1 - y0 + 1;
  std::vector<float> crop(static_cast<size_t>(cw) * static_cast<size_t>(ch));
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x)
      crop[static_cast<size_t>(y) * cw + x] = ink(static_cast<size_t>(y0 + y) * w + (x0 + x));
  // Fit in 20x20, keeping the aspect ratio.
  const double scale = 20.0 / std::max(cw, ch);
  const int nw = std::max(1, static_cast<int>(std::lround(cw * scale)));
  const int nh = std::max(1, static_cast<int>(std::lround(ch * scale)));
  std::vector<float> small = resize_area(crop, cw, ch, nw, nh);
  // Centre of mass to the centre of the 28x28 field.
  double mass = 0, mx = 0, my = 0;
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const double v = small[static_cast<size_t>(y) * nw + x];
      mass += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  const int left = static_cast<int>(std::lround(14.0 - (mass > 0 ? mx / mass : nw / 2.0)));
  const int top = static_cast<int>(std::lround(14.0 - (mass > 0 ? my / mass : nh / 2.0)));
  std::vector<float> field(28 * 28, 0.0f);
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const int fx = left + x, fy = top + y;
      if (fx >= 0 && fx < 28 && fy >= 0 && fy < 28) field[static_cast<size_t>(fy) * 28 + fx] = small[static_cast<size_t>(y) * nw + x];
    }
  Tensor out = Tensor::empty({1, 1, 28, 28});
  for (int i = 0; i < 28 * 28; ++i) out.data()[i] = (field[static_cast<size_t>(i)] / 255.0f - kMnistMean) / kMnistStd;
  return out;
}

}  // namespace minidl
