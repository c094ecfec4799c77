// The reverse-mode autograd tape.
//
// Every op that reads a tensor requiring grad (while grad mode is on) records a Node: the
// edges to its inputs and a backward closure that maps the output's gradient to the inputs'
// gradients. The closure captures only the tensors backward needs. Tensor::backward() orders
// the nodes topologically (iteratively: deep graphs do not overflow the stack), runs the
// closures in reverse, sums the gradients of tensors used more than once, stores the result in
// the leaves' .grad, frees every intermediate gradient as soon as it is consumed and finally
// releases the graph (the closures and what they hold).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

// Grad mode is per thread. While a NoGradGuard lives, ops record nothing.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Given the gradient of the op's output, return one gradient per input (an undefined Tensor
// for inputs where needs[i] is false). Each returned gradient has its input's shape.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const std::vector<bool>& needs)>;

class Node {
 public:
  struct Edge {
    std::shared_ptr<Node> node;          // the producer of a non-leaf input
    std::shared_ptr<TensorImpl> leaf;    // a leaf input that requires grad
    bool active() const { return node || leaf; }
  };

  Node(const char* name, std::vector<Edge> edges, BackwardFn fn, Shape output_shape);
  ~Node();

  const char* name() const { return name_; }
  // The layer the node was recorded in (LayerScope), or its op name: the profiler's key.
  const char* profile_name() const { return profile_name_; }
  const std::vector<Edge>& edges() const { return edges_; }
  const Shape& output_shape() const { return output_shape_; }
  bool released() const { return released_; }
  std::vector<Tensor> apply(const Tensor& grad_out);
  void release();

  static int64_t live_count();

 private:
  const char* name_;
  const char* profile_name_;
  std::vector<Edge> edges_;
  BackwardFn fn_;
  Shape output_shape_;
  bool released_ = false;
};

// Whether an op with these inputs must be recorded.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `out` as the result of op `name` over `inputs` when any input requires grad and grad
// mode is on; otherwise returns out untouched. Returns out.
Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn);

}  // namespace minidl
