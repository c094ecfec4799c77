// Aligned float buffers with a size-keyed cache of freed buffers.
//
// A training step allocates the same activation and gradient buffers every step. Handing
// freed buffers back out avoids fresh pages (and their page faults) on every step. The cache
// holds at most kCacheLimitBytes; small buffers bypass it.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {
namespace {

constexpr size_t kAlignment = 64;
constexpr int64_t kMinCachedFloats = 1024;
constexpr int64_t kCacheLimitBytes = int64_t{128} << 20;

std::atomic<int64_t> g_total_bytes{0};
std::atomic<int64_t> g_live_bytes{0};

struct BufferCache {
  std::mutex mutex;
  std::unordered_map<int64_t, std::vector<float*>> free_lists;
  int64_t cached_bytes = 0;

  ~BufferCache() {
    for (auto& entry : free_lists)
      for (float* p : entry.second) std::free(p);
  }
};

BufferCache& cache() {
  static BufferCache instance;
  return instance;
}

float* allocate(int64_t size) {
  if (size >= kMinCachedFloats) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_lists.find(size);
    if (it != c.free_lists.end() && !it->second.empty()) {
      float* p = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= size * static_cast<int64_t>(sizeof(float));
      return p;
    }
  }
  size_t bytes = static_cast<size_t>(size > 0 ? size : 1) * sizeof(float);
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

void deallocate(float* p, int64_t size) {
  if (size >= kMinCachedFloats) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    int64_t bytes = size * static_cast<int64_t>(sizeof(float));
    if (c.cached_bytes + bytes <= kCacheLimitBytes) {
      c.free_lists[size].push_back(p);
      c.cached_bytes += bytes;
      return;
    }
  }
  std::free(p);
}

}  // namespace

Storage::Storage(int64_t size) : data_(nullptr), size_(size) {
  MINIDL_CHECK(size >= 0, "Storage: size must be >= 0, got ", size);
  data_ = allocate(size);
  g_total_bytes += size * static_cast<int64_t>(sizeof(float));
  g_live_bytes += size * static_cast<int64_t>(sizeof(float));
}

Storage::~Storage() {
  deallocate(data_, size_);
  g_live_bytes -= size_ * static_cast<int64_t>(sizeof(float));
}

int64_t Storage::total_bytes_allocated() { return g_total_bytes.load(); }
int64_t Storage::live_bytes() { return g_live_bytes.load(); }

}  // namespace minidl
