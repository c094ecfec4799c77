// reshape, flatten, permute, broadcast_to.
#include <algorithm>

#include "minidl/autograd.h"
#include "minidl/ops.h"
#include "ops/broadcast.h"

namespace minidl {

Tensor reshape(const Tensor& x, const Shape& requested) {
  MINIDL_CHECK(x.defined(), "reshape: input is undefined");
  Shape shape = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MINIDL_CHECK(infer < 0, "reshape: only one dimension may be -1, got ", shape_to_string(requested));
      infer = static_cast<int64_t>(i);
    } else {
      MINIDL_CHECK(shape[i] >= 0, "reshape: invalid dimension in ", shape_to_string(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MINIDL_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", shape_to_string(x.shape()), " into ",
                 shape_to_string(requested));
    shape[static_cast<size_t>(infer)] = x.numel() / known;
  }
  MINIDL_CHECK(numel_of(shape) == x.numel(), "reshape: cannot reshape ", shape_to_string(x.shape()), " (",
               x.numel(), " values) into ", shape_to_string(requested));
  Tensor out = x.view(shape);
  const Shape in_shape = x.shape();
  return record(out, "reshape", {x}, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.view(in_shape)};
  });
}

Tensor flatten(const Tensor& x, int64_t start_dim) {
  MINIDL_CHECK(x.defined() && start_dim >= 0 && start_dim < std::max<int64_t>(x.dim(), 1),
               "flatten: start_dim ", start_dim, " out of range for shape ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  Shape shape(x.shape().begin(), x.shape().begin() + start_dim);
  int64_t rest = 1;  // explicit, not -1: an empty batch [0, C, H, W] keeps its C*H*W columns
  for (int64_t d = start_dim; d < x.dim(); ++d) rest *= x.size(d);
  shape.push_back(rest);
  return reshape(x, shape);
}

static Tensor permute_raw(const Tensor& x, const std::vector<int64_t>& order) {
  const size_t r = order.size();
  Shape out_shape(r);
  for (size_t i = 0; i < r; ++i) out_shape[i] = x.shape()[static_cast<size_t>(order[i])];
  Tensor out = Tensor::empty(out_shape);
  const Shape in_strides = x.strides();
  std::vector<int64_t> step(r);
  for (size_t i = 0; i < r; ++i) step[i] = in_strides[static_cast<size_t>(order[i])];
  std::vector<int64_t> index(r, 0);
  const float* src = x.data();
  float* dst = out.data();
  int64_t offset = 0;
  for (int64_t n = 0; n < out.numel(); ++n) {
    dst[n] = src[offset];
    for (size_t d = r; d-- > 0;) {
      offset += step[d];
      if (++index[d] < out_shape[d]) break;
      offset -= step[d] * out_shape[d];
      index[d] = 0;
    }
  }
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  MINIDL_CHECK(x.defined(), "permute: input is undefined");
  const size_t r = static_cast<size_t>(x.dim());
  MINIDL_CHECK(order.size() == r, "permute: order has ", order.size(), " axes, input shape ",
               shape_to_string(x.shape()), " has ", r);
  std::vector<int64_t> inverse(r, -1);
  for (size_t i = 0; i < r; ++i) {
    const int64_t a = order[i];
    MINIDL_CHECK(a >= 0 && a < static_cast<int64_t>(r) && inverse[static_cast<size_t>(a)] < 0,
                 "permute: order must be a permutation of 0..", r - 1);
    inverse[static_cast<size_t>(a)] = static_cast<int64_t>(i);
  }
  Tensor out = permute_raw(x, order);
  return record(out, "permute", {x}, [inverse](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{permute_raw(g, inverse)};
  });
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  MINIDL_CHECK(x.defined(), "broadcast_to: input is undefined");
  MINIDL_CHECK(broadcast_shapes(x.shape(), shape, "broadcast_to") == shape, "broadcast_to: cannot broadcast ",
               shape_to_string(x.shape()), " to ", shape_to_string(shape));
  Tensor out = detail::expand(x, shape);
  if (out.data() == x.data()) out = x.view(shape);
  const Shape in_shape = x.shape();
  return record(out, "broadcast_to", {x}, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{detail::sum_to(g, in_shape)};
  });
}

}  // namespace minidl
