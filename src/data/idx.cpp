#include "minidl/data/idx.h"

#include <zlib.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "minidl/io/file.h"

namespace minidl {

namespace {

// No IDX file minidl reads is larger than this (MNIST's training images are 47 MB).
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 31;

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b;
}

// The total size an IDX file's header declares (header + data), once `head` holds the whole
// header; 0 until then.
uint64_t declared_idx_bytes(const std::string& head) {
  if (head.size() < 4) return 0;
  const uint64_t ndims = static_cast<unsigned char>(head[3]), header = 4 + 4 * ndims;
  if (head.size() < header) return 0;
  uint64_t count = 1;
  for (uint64_t d = 0; d < ndims; ++d) {
    const auto* p = reinterpret_cast<const unsigned char*>(head.data() + 4 + 4 * d);
    const uint64_t v = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | uint64_t{p[3]};
    if (v != 0 && count > kMaxIdxBytes / v) return kMaxIdxBytes + 1;  // parse_idx names the dimension
    count *= v;
  }
  return header + count;
}

// Inflates a gzip stream, refusing to produce more than max_out bytes, nor more than the IDX
// header at its start declares: a small corrupt or hostile file (a "zip bomb") cannot make us
// allocate more than its header claims, and the header's claim is checked against the data.
std::string gunzip(const std::string& in, const std::string& source, uint64_t max_out) {
  uint64_t declared = 0;
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw InputError(source + ": cannot initialise gzip decoding");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
  std::string out;
  std::array<char, 1 << 16> chunk{};
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk.data());
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string msg = zs.msg ? zs.msg : (rc == Z_BUF_ERROR ? "unexpected end of data" : "corrupt data");
      inflateEnd(&zs);
      throw InputError(source + ": corrupt gzip data (" + msg + ")");
    }
    out.append(chunk.data(), chunk.size() - zs.avail_out);
    if (out.size() > max_out) {
      inflateEnd(&zs);
      throw InputError(detail::concat(source, ": gzip data expands to more than ", max_out, " bytes"));
    }
    if (declared == 0) declared = declared_idx_bytes(out);
    if (declared > max_out) {
      inflateEnd(&zs);
      throw InputError(detail::concat(source, ": the IDX header declares more than ", max_out, " bytes of data"));
    }
    if (declared != 0 && out.size() > declared) {
      inflateEnd(&zs);
      throw InputError(detail::concat(source, ": gzip data expands to more than the ", declared,
                                      " bytes its IDX header declares (trailing data)"));
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw InputError(source + ": corrupt gzip data (truncated)");
    }
  }
  inflateEnd(&zs);
  return out;
}

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

IdxArray parse_idx(const std::string& raw, const std::string& source, int expected_dims) {
  const std::string bytes = is_gzip(raw) ? gunzip(raw, source, kMaxIdxBytes) : raw;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4) throw InputError(detail::concat(source, ": file has ", bytes.size(), " bytes, too short for an IDX header"));
  if (p[0] != 0 || p[1] != 0)
    throw InputError(detail::concat(source, ": not an IDX file (magic starts with ", int(p[0]), ", ", int(p[1]), ", expected 0, 0)"));
  if (p[2] != 0x08)
    throw InputError(detail::concat(source, ": IDX value type 0x", std::hex, int(p[2]), " is not supported (expected 0x08, unsigned bytes)"));
  const int ndims = p[3];
  if (ndims != expected_dims)
    throw InputError(detail::concat(source, ": IDX file has ", ndims, " dimensions, expected ", expected_dims));
  const uint64_t header = 4 + 4 * static_cast<uint64_t>(ndims);
  if (bytes.size() < header)
    throw InputError(detail::concat(source, ": truncated IDX header (", bytes.size(), " bytes, expected ", header, ")"));
  IdxArray out;
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t v = read_be32(p + 4 + 4 * d);
    out.dims.push_back(v);
    if (v != 0 && count > kMaxIdxBytes / v)
      throw InputError(detail::concat(source, ": IDX dimensions are too large (dimension ", d, " is ", v, ")"));
    count *= v;
  }
  if (bytes.size() - header != count) {
    std::string dims;
    for (int64_t d : out.dims) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
    throw InputError(detail::concat(source, ": IDX dimensions ", dims, " need ", count, " bytes of data, the file has ",
                                    bytes.size() - header, bytes.size() - header < count ? " (truncated)" : " (trailing data)"));
  }
  out.values.assign(p + header, p + header + count);
  return out;
}

IdxArray read_idx(const std::string& path, int expected_dims) {
  return parse_idx(read_file(path, static_cast<int64_t>(kMaxIdxBytes)), path, expected_dims);
}

Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path, int64_t limit, int classes) {
  MINIDL_CHECK(limit >= 0, "load_idx_dataset: limit must be >= 0, got ", limit);
  IdxArray images = read_idx(images_path, 3);
  IdxArray labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0])
    throw InputError(detail::concat(images_path, " has ", images.dims[0], " images but ", labels_path, " has ",
                                    labels.dims[0], " labels; they must match"));
  Dataset d;
  d.count = images.dims[0];
  d.rows = images.dims[1];
  d.cols = images.dims[2];
  if (limit > 0 && limit < d.count) d.count = limit;
  d.pixels.assign(images.values.begin(), images.values.begin() + d.count * d.rows * d.cols);
  d.labels.resize(static_cast<size_t>(d.count));
  for (int64_t i = 0; i < d.count; ++i) {
    const int label = labels.values[static_cast<size_t>(i)];
    if (label >= classes)
      throw InputError(detail::concat(labels_path, ": label ", label, " at index ", i, " is outside 0..", classes - 1));
    d.labels[static_cast<size_t>(i)] = label;
  }
  return d;
}

std::string find_idx_file(const std::string& dir, const std::string& canonical_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": data directory does not exist");
  // "train-images-idx3-ubyte" is also distributed as "train-images.idx3-ubyte"
  std::string dotted = canonical_name;
  const size_t dash = dotted.rfind("-idx");
  if (dash != std::string::npos) dotted[dash] = '.';
  for (const std::string& name : {canonical_name, canonical_name + ".gz", dotted, dotted + ".gz"}) {
    const fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  throw InputError(dir + ": no " + canonical_name + " (nor .gz, nor " + dotted + ") in the data directory; "
                   "run scripts/get_mnist.sh to fetch MNIST");
}

Mnist load_mnist(const std::string& dir, int64_t train_limit, int64_t test_limit) {
  Mnist m;
  m.train = load_idx_dataset(find_idx_file(dir, "train-images-idx3-ubyte"), find_idx_file(dir, "train-labels-idx1-ubyte"),
                             train_limit);
  m.test = load_idx_dataset(find_idx_file(dir, "t10k-images-idx3-ubyte"), find_idx_file(dir, "t10k-labels-idx1-ubyte"),
                            test_limit);
  return m;
}

float normalize_pixel(uint8_t value) { return (static_cast<float>(value) / 255.0f - kMnistMean) / kMnistStd; }

void make_batch(const Dataset& data, const std::vector<int64_t>& order, int64_t begin, int64_t end, Tensor& images,
                std::vector<int32_t>& labels) {
  MINIDL_CHECK(begin >= 0 && begin <= end && end <= static_cast<int64_t>(order.size()), "make_batch: range [", begin,
               ", ", end, ") out of range for ", order.size(), " examples");
  const int64_t C = data.channels, plane = data.rows * data.cols, example = C * plane;
  MINIDL_CHECK(static_cast<int64_t>(data.mean.size()) == C && static_cast<int64_t>(data.std.size()) == C,
               "make_batch: the data set has ", C, " channels but ", data.mean.size(), " means and ", data.std.size(),
               " stds");
  // One table per channel: the same value as (v/255 - mean) / std computed per pixel.
  std::vector<std::array<float, 256>> lut(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c)
    for (int v = 0; v < 256; ++v)
      lut[static_cast<size_t>(c)][static_cast<size_t>(v)] =
          (static_cast<float>(v) / 255.0f - data.mean[static_cast<size_t>(c)]) / data.std[static_cast<size_t>(c)];
  const int64_t B = end - begin;
  const Shape shape{B, C, data.rows, data.cols};
  if (!images.defined() || images.shape() != shape) images = Tensor::empty(shape);
  labels.resize(static_cast<size_t>(B));
  float* out = images.data();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = order[static_cast<size_t>(begin + b)];
    const uint8_t* src = data.pixels.data() + i * example;
    for (int64_t c = 0; c < C; ++c) {
      const auto& t = lut[static_cast<size_t>(c)];
      for (int64_t k = 0; k < plane; ++k) out[b * example + c * plane + k] = t[src[c * plane + k]];
    }
    labels[static_cast<size_t>(b)] = data.labels[static_cast<size_t>(i)];
  }
}

std::vector<int64_t> epoch_order(int64_t count, bool shuffle, Generator& gen) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
  if (shuffle)
    for (int64_t i = count - 1; i > 0; --i)
      std::swap(order[static_cast<size_t>(i)], order[gen.below(static_cast<uint32_t>(i + 1))]);
  return order;
}

}  // namespace minidl
