#include "minidl/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "minidl/data/image.h"
#include "minidl/error.h"
#include "minidl/io/file.h"

namespace minidl {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kCifarPixels = 3 * 32 * 32;
// The CIFAR files' sizes as published: 10,000 records a batch (CIFAR-10), 50,000 and 10,000
// (CIFAR-100). A file may hold fewer whole records, never more.
constexpr int64_t kCifar10Records = 10000, kCifar100TrainRecords = 50000, kCifar100TestRecords = 10000;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// dir itself, or the directory its archive unpacks to, whichever holds `marker`.
fs::path cifar_root(const fs::path& dir, const char* archive_dir, const char* marker) {
  if (is_file(dir / marker)) return dir;
  if (is_file(dir / archive_dir / marker)) return dir / archive_dir;
  return {};
}

// One name per non-empty line (batches.meta.txt, fine_label_names.txt), or none when the file is
// missing; InputError when it names another number of classes.
std::vector<std::string> read_names(const fs::path& path, int64_t classes) {
  if (!is_file(path)) return {};
  std::istringstream in(read_file(path.string(), int64_t{1} << 20));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int64_t>(names.size()) != classes)
    throw InputError(detail::concat(path.string(), ": names ", names.size(), " classes, expected ", classes));
  return names;
}

// Appends the records of one CIFAR binary file: `label_bytes` label bytes (the one used at
// `label_at`), then 3072 pixel bytes, each record.
void read_cifar_file(const fs::path& path, int label_bytes, int label_at, int64_t classes, int64_t max_records,
                     int64_t limit, Dataset& d) {
  const int64_t record = label_bytes + kCifarPixels;
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) throw InputError(path.string() + ": cannot read (" + ec.message() + ")");
  if (size == 0 || size % record != 0 || size / record > max_records)
    throw InputError(detail::concat(path.string(), ": ", size, " bytes is not a CIFAR file of records of ", record,
                                    " bytes (", label_bytes, " label byte", label_bytes > 1 ? "s" : "",
                                    " + 3072 pixels), at most ", max_records, " records"));
  const std::string bytes = read_file(path.string(), size);
  int64_t n = size / record;
  if (limit > 0) n = std::min(n, limit - d.count);
  for (int64_t i = 0; i < n; ++i) {
    const auto* r = reinterpret_cast<const uint8_t*>(bytes.data() + i * record);
    const int label = r[label_at];
    if (label >= classes)
      throw InputError(detail::concat(path.string(), ": record ", i, " has label ", label, ", outside 0..", classes - 1));
    d.labels.push_back(label);
    d.pixels.insert(d.pixels.end(), r + label_bytes, r + record);
  }
  d.count += n;
}

Dataset cifar_split(const std::vector<fs::path>& files, int label_bytes, int label_at, int64_t classes,
                    int64_t max_records, int64_t limit, const std::vector<std::string>& names) {
  Dataset d;
  d.channels = 3;
  d.rows = d.cols = 32;
  d.classes = classes;
  d.class_names = names;
  for (const fs::path& f : files) {
    if (limit > 0 && d.count >= limit) break;
    if (!is_file(f)) throw InputError(f.string() + ": missing; a CIFAR directory holds the files of its archive");
    read_cifar_file(f, label_bytes, label_at, classes, max_records, limit, d);
  }
  return d;
}

Mnist load_cifar10(const fs::path& root, const DataOptions& o) {
  const auto names = read_names(root / "batches.meta.txt", 10);
  Mnist m;
  if (o.load_train) {
    std::vector<fs::path> files;
    for (int b = 1; b <= 5; ++b) files.push_back(root / ("data_batch_" + std::to_string(b) + ".bin"));
    m.train = cifar_split(files, 1, 0, 10, kCifar10Records, o.train_limit, names);
  }
  m.test = cifar_split({root / "test_batch.bin"}, 1, 0, 10, kCifar10Records, o.test_limit, names);
  return m;
}

Mnist load_cifar100(const fs::path& root, const DataOptions& o, bool coarse) {
  const int64_t classes = coarse ? 20 : 100;
  const auto names = read_names(root / (coarse ? "coarse_label_names.txt" : "fine_label_names.txt"), classes);
  Mnist m;
  if (o.load_train) m.train = cifar_split({root / "train.bin"}, 2, coarse ? 0 : 1, classes, kCifar100TrainRecords, o.train_limit, names);
  m.test = cifar_split({root / "test.bin"}, 2, coarse ? 0 : 1, classes, kCifar100TestRecords, o.test_limit, names);
  return m;
}

// --- image folders ---------------------------------------------------------------------------

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::vector<std::string> sorted_subdirs(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string()[0] != '.') out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// FNV-1a over the bytes of s.
uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

struct FolderFile {
  fs::path path;
  int32_t label = 0;
};

// Every image of root/<split>/<class>/, classes in `classes` order, files sorted by name.
std::vector<FolderFile> list_split(const fs::path& split, const std::vector<std::string>& classes) {
  std::vector<FolderFile> files;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path dir = split / classes[k];
    if (!is_dir(dir)) continue;  // a class may have no test images
    std::vector<fs::path> in_class;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_image_name(e.path())) in_class.push_back(e.path());
    std::sort(in_class.begin(), in_class.end());
    for (const auto& p : in_class) files.push_back({p, static_cast<int32_t>(k)});
  }
  return files;
}

// The cache key of a split: its files' names, sizes and times, the size and channels asked for.
std::string cache_key(const std::vector<FolderFile>& files, const DataOptions& o) {
  std::ostringstream os;
  os << o.image_size << 'x' << o.channels << ';';
  for (const auto& f : files) {
    std::error_code ec;
    os << f.path.string() << ',' << f.label << ',' << fs::file_size(f.path, ec) << ','
       << fs::last_write_time(f.path, ec).time_since_epoch().count() << ';';
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(os.str())));
  return buf;
}

// Cache file: "MINIDLIF", then int64 count, channels, rows, cols, classes, then int32 labels and
// the pixels. Read back only when its size is exactly what the header says.
const char kCacheMagic[8] = {'M', 'I', 'N', 'I', 'D', 'L', 'I', 'F'};

bool read_cache(const fs::path& path, Dataset& d) {
  if (!is_file(path)) return false;
  std::string bytes;
  try {
    bytes = read_file(path.string(), int64_t{1} << 34);
  } catch (const InputError&) {
    return false;
  }
  int64_t h[5];
  if (bytes.size() < sizeof kCacheMagic + sizeof h || std::memcmp(bytes.data(), kCacheMagic, sizeof kCacheMagic) != 0)
    return false;
  std::memcpy(h, bytes.data() + sizeof kCacheMagic, sizeof h);
  // Each field within what a folder can produce before any product is formed (no overflow),
  // and the count no larger than the file can hold, so a forged header cannot make `want` wrap.
  if (h[1] < 1 || h[1] > 3 || h[2] < 1 || h[2] > 1024 || h[3] < 1 || h[3] > 1024 || h[4] < 2 || h[4] > (int64_t{1} << 20))
    return false;
  const int64_t example = h[1] * h[2] * h[3];
  const int64_t body = static_cast<int64_t>(bytes.size() - sizeof kCacheMagic - sizeof h);
  if (h[0] < 0 || h[0] > body / (4 + example) || body != h[0] * (4 + example)) return false;
  const char* p = bytes.data() + sizeof kCacheMagic + sizeof h;
  std::vector<int32_t> labels(static_cast<size_t>(h[0]));
  std::memcpy(labels.data(), p, labels.size() * 4);
  for (int32_t l : labels)
    if (l < 0 || l >= h[4]) return false;
  p += labels.size() * 4;
  d.count = h[0];
  d.channels = h[1];
  d.rows = h[2];
  d.cols = h[3];
  d.classes = h[4];
  d.labels = std::move(labels);
  d.pixels.assign(reinterpret_cast<const uint8_t*>(p), reinterpret_cast<const uint8_t*>(bytes.data() + bytes.size()));
  return true;
}

void write_cache(const fs::path& path, const Dataset& d) {
  std::string bytes(kCacheMagic, sizeof kCacheMagic);
  const int64_t h[5] = {d.count, d.channels, d.rows, d.cols, d.classes};
  bytes.append(reinterpret_cast<const char*>(h), sizeof h);
  bytes.append(reinterpret_cast<const char*>(d.labels.data()), d.labels.size() * 4);
  bytes.append(reinterpret_cast<const char*>(d.pixels.data()), d.pixels.size());
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  try {
    write_file_atomic(path.string(), bytes);
  } catch (const OutputError&) {
    // A read-only or full data directory: the set is decoded again next time.
  }
}

Dataset folder_split(const fs::path& root, const std::string& split, const std::vector<std::string>& classes,
                     const DataOptions& o, int64_t limit) {
  std::vector<FolderFile> files = list_split(root / split, classes);
  if (files.empty())
    throw InputError(detail::concat((root / split).string(), ": no .png, .jpg, .jpeg or .bmp images in its class folders"));
  if (limit > 0 && static_cast<int64_t>(files.size()) > limit) files.resize(static_cast<size_t>(limit));
  Dataset d;
  const fs::path cache = root / ".minidl-cache" / (split + "-" + cache_key(files, o) + ".bin");
  // A cache is used only when it describes this split: its files (the key), their count, the
  // size and channels asked for, the classes. Anything else is decoded again.
  if (o.cache && read_cache(cache, d) && d.channels == o.channels && d.rows == o.image_size && d.cols == o.image_size &&
      d.classes == static_cast<int64_t>(classes.size()) && d.count == static_cast<int64_t>(files.size())) {
    d.class_names = classes;
    return d;
  }
  d = Dataset{};
  d.channels = o.channels;
  d.rows = d.cols = o.image_size;
  d.classes = static_cast<int64_t>(classes.size());
  d.class_names = classes;
  const size_t example = static_cast<size_t>(o.channels) * static_cast<size_t>(o.image_size) * static_cast<size_t>(o.image_size);
  d.pixels.reserve(files.size() * example);
  for (const FolderFile& f : files) {
    const Image image = resize_image(load_image_channels(f.path.string(), o.channels), o.image_size, o.image_size);
    for (float v : image.pixels) d.pixels.push_back(static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)));
    d.labels.push_back(f.label);
    ++d.count;
  }
  if (o.cache) write_cache(cache, d);
  return d;
}

Mnist load_image_folder(const fs::path& root, const DataOptions& o) {
  MINIDL_CHECK(o.image_size >= 1 && o.image_size <= 1024, "--image-size must be 1 to 1024, got ", o.image_size);
  MINIDL_CHECK(o.channels == 1 || o.channels == 3, "--image-channels must be 1 or 3, got ", o.channels);
  // The classes are the training folders' (ImageFolder's), sorted; the test split uses the same
  // indices.
  const fs::path train_dir = root / "train";
  const std::vector<std::string> classes = sorted_subdirs(train_dir);
  if (classes.size() < 2)
    throw InputError(detail::concat(train_dir.string(), ": an image folder needs at least 2 class folders, found ",
                                    classes.size()));
  for (const std::string& c : sorted_subdirs(root / "test"))
    if (!std::binary_search(classes.begin(), classes.end(), c))
      throw InputError(detail::concat((root / "test" / c).string(), ": a test class that train/ does not have"));
  Mnist m;
  if (o.load_train) m.train = folder_split(root, "train", classes, o, o.train_limit);
  m.test = folder_split(root, "test", classes, o, o.test_limit);
  return m;
}

}  // namespace

std::string detect_data_format(const std::string& dir) {
  const fs::path d(dir);
  if (!is_dir(d)) throw InputError(dir + ": data directory does not exist");
  for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte",
                           "train-images.idx3-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"})
    if (is_file(d / name)) return "idx";
  if (!cifar_root(d, "cifar-10-batches-bin", "test_batch.bin").empty()) return "cifar10";
  if (!cifar_root(d, "cifar-100-binary", "test.bin").empty()) return "cifar100";
  if (is_dir(d / "train") && is_dir(d / "test")) return "imagefolder";
  throw InputError(dir + ": no data set found: expected MNIST-style IDX files (train-images-idx3-ubyte, ...), "
                         "CIFAR-10 binaries (test_batch.bin, data_batch_1.bin, ...), CIFAR-100 binaries (train.bin, "
                         "test.bin) or an image folder (train/<class>/, test/<class>/); "
                         "scripts/get_mnist.sh fetches MNIST");
}

void dataset_statistics(const Dataset& data, std::vector<float>& mean, std::vector<float>& std) {
  const int64_t C = data.channels, plane = data.rows * data.cols;
  std::vector<double> sum(static_cast<size_t>(C), 0.0), sq(static_cast<size_t>(C), 0.0);
  for (int64_t i = 0; i < data.count; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* p = data.pixels.data() + (i * C + c) * plane;
      double s = 0, q = 0;
      for (int64_t k = 0; k < plane; ++k) {
        const double v = p[k] / 255.0;
        s += v;
        q += v * v;
      }
      sum[static_cast<size_t>(c)] += s;
      sq[static_cast<size_t>(c)] += q;
    }
  const double n = static_cast<double>(data.count * plane);
  mean.assign(static_cast<size_t>(C), 0.0f);
  std.assign(static_cast<size_t>(C), 1.0f);
  for (size_t c = 0; c < static_cast<size_t>(C); ++c) {
    if (n == 0) continue;
    const double m = sum[c] / n, var = std::max(0.0, sq[c] / n - m * m);
    mean[c] = static_cast<float>(m);
    std[c] = var > 1e-12 ? static_cast<float>(std::sqrt(var)) : 1.0f;  // a constant channel is only centred
  }
}

Mnist load_dataset(const std::string& dir, const DataOptions& o) {
  std::string format = o.format == "auto" ? detect_data_format(dir) : o.format;
  MINIDL_CHECK(o.normalize == "auto" || o.normalize == "dataset", "--normalize: expected auto or dataset, got '",
               o.normalize, "'");
  const fs::path d(dir);
  if (!is_dir(d)) throw InputError(dir + ": data directory does not exist");
  Mnist m;
  if (format == "idx") {
    // Labels are bytes; the classes are MNIST's 10, or more when a label says so (EMNIST).
    m.test = load_idx_dataset(find_idx_file(dir, "t10k-images-idx3-ubyte"), find_idx_file(dir, "t10k-labels-idx1-ubyte"),
                              o.test_limit, 256);
    if (o.load_train)
      m.train = load_idx_dataset(find_idx_file(dir, "train-images-idx3-ubyte"),
                                 find_idx_file(dir, "train-labels-idx1-ubyte"), o.train_limit, 256);
    int64_t classes = 10;
    for (const Dataset* s : {&m.train, &m.test})
      for (int32_t label : s->labels) classes = std::max<int64_t>(classes, label + 1);
    m.train.classes = m.test.classes = classes;
  } else if (format == "cifar10") {
    const fs::path root = cifar_root(d, "cifar-10-batches-bin", "test_batch.bin");
    if (root.empty()) throw InputError(dir + ": no test_batch.bin (CIFAR-10's binary version), here or in cifar-10-batches-bin/");
    m = load_cifar10(root, o);
  } else if (format == "cifar100" || format == "cifar100-coarse") {
    const fs::path root = cifar_root(d, "cifar-100-binary", "test.bin");
    if (root.empty()) throw InputError(dir + ": no test.bin (CIFAR-100's binary version), here or in cifar-100-binary/");
    m = load_cifar100(root, o, format == "cifar100-coarse");
  } else if (format == "imagefolder") {
    m = load_image_folder(d, o);
  } else {
    throw Error("--data-format: expected auto, idx, cifar10, cifar100, cifar100-coarse or imagefolder, got '" + format + "'");
  }
  if (format != "idx" || o.normalize == "dataset") {
    if (o.load_train) {
      dataset_statistics(m.train, m.train.mean, m.train.std);
    } else {
      dataset_statistics(m.test, m.test.mean, m.test.std);  // overridden by the model's (eval)
    }
  }
  if (o.load_train) {
    m.test.mean = m.train.mean;
    m.test.std = m.train.std;
  } else {
    m.train = Dataset{};
    m.train.channels = m.test.channels;
    m.train.rows = m.test.rows;
    m.train.cols = m.test.cols;
    m.train.classes = m.test.classes;
    m.train.class_names = m.test.class_names;
    m.train.mean = m.test.mean;
    m.train.std = m.test.std;
  }
  return m;
}

}  // namespace minidl
