// libFuzzer target: the safetensors decoder, then strict loading into the reference models.
#include <cstddef>
#include <cstdint>
#include <string>

#include "minidl/io/safetensors.h"
#include "minidl/nn/models.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto mlp = minidl::make_model({minidl::ModelKind::Mlp, true, minidl::Activation::Sigmoid,
                                        minidl::BatchNormImpl::Fused, 0, {}});
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    minidl::Safetensors file = minidl::decode_safetensors(bytes, "fuzz");
    minidl::load_state_dict(*mlp, file.tensors, "fuzz");
  } catch (const minidl::InputError&) {
  }
  return 0;
}
