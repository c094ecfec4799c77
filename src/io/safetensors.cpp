#include "minidl/io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "minidl/io/file.h"

namespace minidl {

namespace {

using nlohmann::json;

// A header longer than this is refused before it is parsed. minidl's own headers are a few KB
// (about 100 bytes a tensor), so 1 MiB holds some 10,000 tensors; parsing it costs at most a
// small multiple of it (JSON nesting is also limited: kMaxHeaderDepth).
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;
// {"name": {"shape": [..]}}: an object of objects of arrays. Deeper nesting is refused while it
// is parsed (a 1 MiB header of "[[[[..." would otherwise build a million nested values).
constexpr int kMaxHeaderDepth = 2;  // nlohmann counts the top object as depth 0

const char* dtype_name(DType d) { return d == DType::F32 ? "F32" : "I64"; }

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw InputError(source + ": invalid safetensors file: " + what);
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string encode_safetensors(const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // Sorted by name (json objects are ordered maps), data laid out in the same order.
  std::map<std::string, const NamedTensor*> sorted;
  for (const auto& t : tensors) {
    MINIDL_CHECK(sorted.emplace(t.name, &t).second, "safetensors: tensor name '", t.name, "' appears twice");
    MINIDL_CHECK(t.name != "__metadata__", "safetensors: '__metadata__' is reserved");
  }
  json header = json::object();
  std::string data;
  for (const auto& [name, t] : sorted) {
    const size_t begin = data.size();
    const float* p = t->tensor.data();
    const int64_t n = t->tensor.numel();
    if (t->dtype == DType::F32) {
      data.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n) * 4);  // x86-64 is little-endian
    } else {
      for (int64_t i = 0; i < n; ++i) append_u64_le(data, static_cast<uint64_t>(static_cast<int64_t>(std::llround(p[i]))));
    }
    header[name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->tensor.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  std::string out;
  append_u64_le(out, text.size());
  out += text;
  out += data;
  return out;
}

Safetensors decode_safetensors(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 8) bad(source, detail::concat("file has ", bytes.size(), " bytes, fewer than the 8-byte header length"));
  const uint64_t header_len = read_u64_le(reinterpret_cast<const unsigned char*>(bytes.data()));
  if (header_len > bytes.size() - 8)
    bad(source, detail::concat("header length ", header_len, " exceeds the file (", bytes.size() - 8,
                               " bytes after the length field)"));
  if (header_len > kMaxHeaderBytes)
    bad(source, detail::concat("header length ", header_len, " is more than the ", kMaxHeaderBytes, " accepted"));
  json header;
  struct TooDeep {};
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len),
                         [](int depth, json::parse_event_t event, json&) {
                           if (depth > kMaxHeaderDepth &&
                               (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start))
                             throw TooDeep{};
                           return true;
                         });
  } catch (const TooDeep&) {
    bad(source, detail::concat("header nests deeper than the ", kMaxHeaderDepth + 1,
                               " levels of a safetensors header (object, tensor, shape)"));
  } catch (const json::exception& e) {
    bad(source, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) bad(source, "header must be a JSON object");
  const uint64_t data_size = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;

  Safetensors result;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) bad(source, "__metadata__ must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) bad(source, "__metadata__ value of '" + m.key() + "' must be a string");
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      bad(source, where + " must have dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) bad(source, where + ": dtype must be a string");
    const std::string dtype = entry["dtype"].get<std::string>();
    size_t elem_size = 0;
    if (dtype == "F32") elem_size = 4;
    else if (dtype == "I64" || dtype == "F64") elem_size = 8;
    else if (dtype == "F16" || dtype == "BF16" || dtype == "I32" || dtype == "I16" || dtype == "I8" || dtype == "U8" ||
             dtype == "BOOL" || dtype == "U16" || dtype == "U32" || dtype == "U64" || dtype == "F8_E4M3" || dtype == "F8_E5M2")
      bad(source, where + ": dtype " + dtype + " is not supported (expected F32, F64 or I64)");
    else
      bad(source, where + ": unknown dtype '" + dtype + "'");
    const json& shape_json = entry["shape"];
    if (!shape_json.is_array()) bad(source, where + ": shape must be an array");
    Shape shape;
    uint64_t count = 1;
    for (const json& d : shape_json) {
      if (!d.is_number_unsigned()) bad(source, where + ": shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40) || (v && count > (uint64_t{1} << 40) / v))
        bad(source, where + ": shape " + shape_json.dump() + " is too large");
      count *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      bad(source, where + ": data_offsets must be [begin, end] with non-negative integers");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end) bad(source, detail::concat(where, ": data_offsets [", begin, ", ", end, "] has begin after end"));
    if (end > data_size)
      bad(source, detail::concat(where, ": data_offsets [", begin, ", ", end, "] are out of bounds (data section has ",
                                 data_size, " bytes)"));
    if (end - begin != count * elem_size)
      bad(source, detail::concat(where, ": ", end - begin, " bytes of data, expected ", count * elem_size, " for shape ",
                                 shape_to_string(shape), " of ", dtype));
    spans.push_back({begin, end, name});
    Tensor t = Tensor::empty(shape);
    float* out = t.data();
    const char* src = data + begin;
    if (dtype == "F32") {
      std::memcpy(out, src, count * 4);
    } else if (dtype == "F64") {
      for (uint64_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
    } else {
      for (uint64_t i = 0; i < count; ++i) {
        int64_t v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
    }
    result.tensors.push_back({name, t, dtype == "I64" ? DType::I64 : DType::F32});
  }
  // The data section must be covered exactly: sorted, no overlap, no holes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const Span& s : spans) {
    if (s.begin < expected) bad(source, "tensor '" + s.name + "' overlaps the data of another tensor");
    if (s.begin > expected)
      bad(source, detail::concat("tensor '", s.name, "' starts at byte ", s.begin, ", leaving a hole after byte ", expected));
    expected = s.end;
  }
  if (expected != data_size)
    bad(source, detail::concat("the data section has ", data_size, " bytes but the tensors cover ", expected));
  return result;
}

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, encode_safetensors(tensors, metadata));
}

Safetensors load_safetensors(const std::string& path) { return decode_safetensors(read_file(path), path); }

void load_state_dict(Module& module, const std::vector<NamedTensor>& tensors, const std::string& source) {
  const std::vector<NamedTensor> own = module.state_dict();
  std::map<std::string, const NamedTensor*> given;
  for (const auto& t : tensors) given[t.name] = &t;
  std::vector<std::string> missing, unexpected;
  std::set<std::string> own_names;
  for (const auto& t : own) {
    own_names.insert(t.name);
    if (!given.count(t.name)) missing.push_back(t.name);
  }
  for (const auto& t : tensors)
    if (!own_names.count(t.name)) unexpected.push_back(t.name);
  if (!missing.empty() || !unexpected.empty()) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    std::string msg = source + ": state dict does not match the model:";
    if (!missing.empty()) msg += " missing tensors: " + join(missing) + ";";
    if (!unexpected.empty()) msg += " unexpected tensors: " + join(unexpected) + ";";
    throw InputError(msg);
  }
  for (const auto& t : own) {
    const Tensor& src = given[t.name]->tensor;
    if (src.shape() != t.tensor.shape())
      throw InputError(source + ": tensor '" + t.name + "' has shape " + shape_to_string(src.shape()) +
                       ", the model expects " + shape_to_string(t.tensor.shape()));
    for (int64_t i = 0; i < src.numel(); ++i)
      if (!std::isfinite(src.data()[i]))
        throw InputError(detail::concat(source, ": tensor '", t.name, "' holds a non-finite value (", src.data()[i],
                                        ") at index ", i));
  }
  for (auto& t : own) {
    Tensor dst = t.tensor;
    dst.copy_(given[t.name]->tensor);
  }
}

}  // namespace minidl
