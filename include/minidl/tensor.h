// minidl's tensor: float32, N-d, contiguous row-major storage shared between views.
//
// A Tensor is a cheap handle (a shared_ptr to a TensorImpl). Copying a Tensor shares it: the
// copy sees the same data, shape and gradient, like a Python reference to a torch.Tensor. Use
// clone() for an independent copy, detach() for the same data without autograd history.
//
// Layout legend used across minidl: N batch, C channels, H height, W width, O output channels,
// K kernel size, M = N*H*W elements per channel.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <vector>

#include "minidl/error.h"
#include "minidl/random.h"

namespace minidl {

using Shape = std::vector<int64_t>;

class Node;

// Owns one 64-byte aligned float buffer. Buffers are recycled through a small cache keyed by
// size, so a training loop that allocates the same activations every step does not pay for
// fresh pages each time.
class Storage {
 public:
  explicit Storage(int64_t size);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return size_; }

  // Memory accounting for benchmarks and leak tests: bytes of all storage ever created, and
  // of storage alive now.
  static int64_t total_bytes_allocated();
  static int64_t live_bytes();
  // The cache of freed buffers that new storage of the same size reuses (no fresh pages): its
  // bytes now, and handing it back to the system (as torch.cuda.empty_cache does for PyTorch's
  // GPU cache), e.g. between two models of different sizes. Live storage is not touched.
  static int64_t cached_bytes();
  static void release_cached();

 private:
  float* data_;
  int64_t size_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in floats
  Shape shape;
  Shape strides;       // always the contiguous strides of shape (views share storage)
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // leaves only
  std::shared_ptr<Node> grad_fn;     // set on results of recorded ops

  TensorImpl();
  ~TensorImpl();
  static int64_t live_count();
};

int64_t numel_of(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;  // undefined
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Creation. empty() leaves the data uninitialised.
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor uniform(const Shape& shape, float low, float high, Generator& gen);
  static Tensor normal(const Shape& shape, float mean, float std, Generator& gen);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  // size(-1) is the last dimension, as in PyTorch.
  int64_t size(int64_t d) const;
  int64_t numel() const { return numel_of(impl_->shape); }

  float* data() { return impl_->storage->data() + impl_->offset; }
  const float* data() const { return impl_->storage->data() + impl_->offset; }
  // Element access by full index, bounds-checked (for tests and small tools, not hot loops).
  float& at(std::initializer_list<int64_t> index);
  float at(std::initializer_list<int64_t> index) const;
  float item() const;  // the value of a one-element tensor
  std::vector<float> to_vector() const;

  // Views sharing storage. reshape() here is the raw view; ops.h's reshape() records autograd.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of dimension 0, sharing storage (e.g. a batch of a data set).
  Tensor slice_rows(int64_t begin, int64_t end) const;

  Tensor detach() const;  // same storage, no history, does not require grad
  Tensor clone() const;   // new storage, no history
  void copy_(const Tensor& source);  // in-place data copy; shapes must match
  void fill_(float value);

  // Autograd.
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool requires = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void zero_grad();  // drops the gradient (like PyTorch's set_to_none=True)
  void set_grad(const Tensor& grad);  // holds `grad` (not a copy) as the gradient; undefined drops it
  // Seeds with 1 (scalar outputs only) and back-propagates through the recorded graph, then
  // releases the graph.
  void backward() const;
  void backward(const Tensor& seed) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace minidl
