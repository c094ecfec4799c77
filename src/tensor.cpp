#include "minidl/tensor.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iomanip>
#include <ostream>

#include "minidl/autograd.h"

namespace minidl {

namespace {
std::atomic<int64_t> g_live_impls{0};
}

TensorImpl::TensorImpl() { ++g_live_impls; }
TensorImpl::~TensorImpl() { --g_live_impls; }
int64_t TensorImpl::live_count() { return g_live_impls.load(); }

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

static void check_shape(const Shape& shape, const char* who) {
  for (int64_t d : shape)
    MINIDL_CHECK(d >= 0, who, ": dimensions must be >= 0, got ", shape_to_string(shape));
}

Tensor Tensor::empty(const Shape& shape) {
  check_shape(shape, "Tensor::empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(numel_of(shape));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape) { return full(shape, 0.0f); }
Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.0f); }
Tensor Tensor::scalar(float value) { return full({}, value); }

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  MINIDL_CHECK(numel_of(shape) == static_cast<int64_t>(values.size()), "Tensor::from_vector: shape ",
               shape_to_string(shape), " needs ", numel_of(shape), " values, got ", values.size());
  Tensor t = empty(shape);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

Tensor Tensor::uniform(const Shape& shape, float low, float high, Generator& gen) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = low + (high - low) * gen.uniform();
  return t;
}

Tensor Tensor::normal(const Shape& shape, float mean, float std, Generator& gen) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = mean + std * gen.normal();
  return t;
}

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  MINIDL_CHECK(d >= 0 && d < n, "Tensor::size: dimension ", d, " out of range for shape ",
               shape_to_string(shape()));
  return impl_->shape[static_cast<size_t>(d)];
}

static int64_t flat_index(const Shape& shape, std::initializer_list<int64_t> index) {
  MINIDL_CHECK(index.size() == shape.size(), "Tensor::at: ", index.size(), " indices for shape ",
               shape_to_string(shape));
  int64_t flat = 0;
  size_t d = 0;
  for (int64_t i : index) {
    MINIDL_CHECK(i >= 0 && i < shape[d], "Tensor::at: index ", i, " out of range for dimension ", d,
                 " of shape ", shape_to_string(shape));
    flat = flat * shape[d] + i;
    ++d;
  }
  return flat;
}

float& Tensor::at(std::initializer_list<int64_t> index) { return data()[flat_index(shape(), index)]; }
float Tensor::at(std::initializer_list<int64_t> index) const { return data()[flat_index(shape(), index)]; }

float Tensor::item() const {
  MINIDL_CHECK(numel() == 1, "Tensor::item: needs one element, got shape ", shape_to_string(shape()));
  return data()[0];
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel()); }

Tensor Tensor::view(const Shape& shape) const {
  MINIDL_CHECK(numel_of(shape) == numel(), "view: cannot view shape ", shape_to_string(this->shape()),
               " as ", shape_to_string(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  return Tensor(std::move(impl));
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  MINIDL_CHECK(dim() >= 1 && begin >= 0 && begin <= end && end <= size(0), "slice_rows: rows [", begin,
               ", ", end, ") out of range for shape ", shape_to_string(shape()));
  Shape s = shape();
  int64_t row = numel() / std::max<int64_t>(s[0], 1);
  s[0] = end - begin;
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset + begin * row;
  impl->shape = s;
  impl->strides = contiguous_strides(s);
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const { return view(shape()); }

Tensor Tensor::clone() const {
  Tensor t = empty(shape());
  std::memcpy(t.data(), data(), sizeof(float) * static_cast<size_t>(numel()));
  return t;
}

void Tensor::copy_(const Tensor& source) {
  MINIDL_CHECK(source.shape() == shape(), "copy_: shape mismatch, destination ", shape_to_string(shape()),
               ", source ", shape_to_string(source.shape()));
  if (source.data() != data())
    std::memmove(data(), source.data(), sizeof(float) * static_cast<size_t>(numel()));
}

void Tensor::fill_(float value) {
  float* p = data();
  const int64_t n = numel();
  // (Zeroed gradients of whole activations: split over the threads outside parallel regions.)
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i) p[i] = value;
}

Tensor& Tensor::set_requires_grad(bool requires) {
  MINIDL_CHECK(is_leaf() || requires, "set_requires_grad: only leaf tensors can stop requiring grad");
  impl_->requires_grad = requires;
  return *this;
}

void Tensor::zero_grad() { impl_->grad.reset(); }

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined())
    MINIDL_CHECK(grad.shape() == shape(), "set_grad: gradient of shape ", shape_to_string(grad.shape()), " for a tensor of shape ",
                 shape_to_string(shape()));
  impl_->grad = grad.defined() ? grad.impl_ptr() : nullptr;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  os << "Tensor(shape=" << shape_to_string(t.shape()) << ", data=[";
  const int64_t n = t.numel(), shown = std::min<int64_t>(n, 16);
  for (int64_t i = 0; i < shown; ++i) os << (i ? ", " : "") << std::setprecision(6) << t.data()[i];
  if (shown < n) os << ", ... (" << n << " values)";
  os << "]";
  if (t.requires_grad()) os << ", requires_grad";
  return os << ")";
}

}  // namespace minidl
