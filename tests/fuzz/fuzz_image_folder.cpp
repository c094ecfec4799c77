// libFuzzer target: see targets.h (minidl::fuzz::image_folder).
#include <cstddef>
#include <cstdint>
#include <string>

#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    minidl::fuzz::image_folder(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const minidl::fuzz::FuzzInvariant&) {
    __builtin_trap();
  }
  return 0;
}
