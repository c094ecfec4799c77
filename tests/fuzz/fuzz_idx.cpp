// libFuzzer target: the IDX parser (plain and gzip) and the data-set pairing checks.
#include <cstddef>
#include <cstdint>
#include <string>

#include "minidl/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (int dims : {1, 3}) {
    try {
      minidl::IdxArray a = minidl::parse_idx(bytes, "fuzz", dims);
      // a valid parse is self-consistent
      uint64_t count = 1;
      for (int64_t d : a.dims) count *= static_cast<uint64_t>(d);
      if (count != a.values.size()) __builtin_trap();
    } catch (const minidl::InputError&) {
    }
  }
  return 0;
}
