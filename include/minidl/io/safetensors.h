// The safetensors format (https://github.com/huggingface/safetensors):
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   JSON: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//              "__metadata__": {"key": "value", ...}}   (offsets relative to the data section)
//   rest      the data section: raw little-endian values, tensors back to back, no holes
// minidl writes F32 tensors and I64 for integral buffers (num_batches_tracked); it reads F32,
// I64 and F64 (converted to float32) and rejects anything else by name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "minidl/nn/module.h"

namespace minidl {

struct Safetensors {
  std::map<std::string, std::string> metadata;
  std::vector<NamedTensor> tensors;  // in file order; dtype as stored
};

std::string encode_safetensors(const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata);
// Validates everything and throws InputError naming `source`, the tensor and the expectation.
Safetensors decode_safetensors(const std::string& bytes, const std::string& source);

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata);
Safetensors load_safetensors(const std::string& path);

// Copies tensors into module's parameters and buffers (PyTorch's load_state_dict with
// strict=True): every name must match, with its shape, and every value must be finite.
// Missing and unexpected names are listed in the error. Nothing is changed on error.
void load_state_dict(Module& module, const std::vector<NamedTensor>& tensors, const std::string& source);

}  // namespace minidl
