// sum and mean over a set of axes.
#include <algorithm>

#include "minidl/autograd.h"
#include "minidl/profiler.h"
#include "minidl/ops.h"
#include "ops/broadcast.h"

namespace minidl {

namespace {

// Normalised axes as flags; an empty list means every axis.
std::vector<bool> reduced_axes(const Tensor& x, const std::vector<int64_t>& axes, const char* op) {
  const int64_t r = x.dim();
  std::vector<bool> reduced(static_cast<size_t>(r), axes.empty());
  for (int64_t a : axes) {
    MINIDL_CHECK(a >= -r && a < r, op, ": axis ", a, " out of range for shape ", shape_to_string(x.shape()));
    const size_t i = static_cast<size_t>(a < 0 ? a + r : a);
    MINIDL_CHECK(!reduced[i], op, ": axis ", a, " given twice");
    reduced[i] = true;
  }
  return reduced;
}

Tensor reduce(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim, bool average, const char* op) {
  ProfileScope scope(op);
  MINIDL_CHECK(x.defined(), op, ": input is undefined");
  const std::vector<bool> reduced = reduced_axes(x, axes, op);
  int64_t count = 1;
  for (size_t i = 0; i < reduced.size(); ++i)
    if (reduced[i]) count *= x.shape()[i];
  MINIDL_CHECK(!average || count > 0, op, ": mean over an empty set of values (shape ", shape_to_string(x.shape()), ")");
  Tensor kept = detail::reduce_sum_keepdim(x, reduced, average ? 1.0 / static_cast<double>(count) : 1.0);
  Shape out_shape;
  for (size_t i = 0; i < reduced.size(); ++i)
    if (!reduced[i] || keepdim) out_shape.push_back(reduced[i] ? 1 : x.shape()[i]);
  Tensor out = kept.view(out_shape);
  const Shape in_shape = x.shape(), keep_shape = kept.shape();
  const float scale = average ? 1.0f / static_cast<float>(count) : 1.0f;
  return record(out, op, {x}, [in_shape, keep_shape, scale](const Tensor& g, const std::vector<bool>&) {
    Tensor dx = detail::expand(g.view(keep_shape), in_shape);
    if (scale != 1.0f) {
      if (dx.data() == g.data()) dx = dx.clone();  // expand returned a view of g
      for (int64_t i = 0; i < dx.numel(); ++i) dx.data()[i] *= scale;
    }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) { return reduce(x, axes, keepdim, false, "sum"); }

Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) { return reduce(x, axes, keepdim, true, "mean"); }

}  // namespace minidl
