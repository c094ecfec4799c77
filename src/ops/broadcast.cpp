#include "ops/broadcast.h"

#include <algorithm>

namespace minidl {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    MINIDL_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_to_string(a), " and ", shape_to_string(b),
                 " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace detail {

static std::vector<int64_t> broadcast_strides(const Shape& s, const Shape& out) {
  const size_t r = out.size();
  Shape padded(r - s.size(), 1);
  padded.insert(padded.end(), s.begin(), s.end());
  Shape strides = contiguous_strides(padded);
  for (size_t i = 0; i < r; ++i)
    if (padded[i] == 1) strides[i] = 0;
  return strides;
}

BroadcastPlan make_broadcast_plan(const Shape& a, const Shape& b, const Shape& out) {
  BroadcastPlan plan;
  plan.numel = numel_of(out);
  const Shape sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == 1) continue;
    if (!plan.shape.empty()) {
      const int64_t n = out[i];
      // merge dimension i into the previous one when both operands walk straight across
      if (plan.sa.back() == sa[i] * n && plan.sb.back() == sb[i] * n) {
        plan.shape.back() *= n;
        plan.sa.back() = sa[i];
        plan.sb.back() = sb[i];
        continue;
      }
    }
    plan.shape.push_back(out[i]);
    plan.sa.push_back(sa[i]);
    plan.sb.push_back(sb[i]);
  }
  return plan;
}

Tensor reduce_sum_keepdim(const Tensor& x, const std::vector<bool>& reduced, double scale) {
  const Shape& xs = x.shape();
  Shape out_shape = xs;
  for (size_t i = 0; i < xs.size(); ++i)
    if (reduced[i]) out_shape[i] = 1;
  // Coalesce runs of dimensions that are all reduced or all kept.
  std::vector<int64_t> dims;
  std::vector<bool> red;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] == 1) continue;
    if (!dims.empty() && red.back() == reduced[i]) {
      dims.back() *= xs[i];
    } else {
      dims.push_back(xs[i]);
      red.push_back(reduced[i]);
    }
  }
  const int64_t out_n = numel_of(out_shape);
  std::vector<double> acc(static_cast<size_t>(out_n), 0.0);
  const float* p = x.data();
  if (dims.empty()) {
    if (x.numel()) acc[0] = p[0];
  } else if (x.numel() > 0) {
    // output strides over the coalesced dims: 0 on reduced ones
    std::vector<int64_t> os(dims.size(), 0);
    int64_t s = 1;
    for (size_t i = dims.size(); i-- > 0;)
      if (!red[i]) {
        os[i] = s;
        s *= dims[i];
      }
    const size_t r = dims.size();
    const int64_t L = dims[r - 1];
    const int64_t outer = x.numel() / L;
    std::vector<int64_t> index(r - 1, 0);
    int64_t ob = 0;
    for (int64_t o = 0; o < outer; ++o) {
      const float* row = p + o * L;
      if (red[r - 1]) {
        double t = 0.0;
        for (int64_t i = 0; i < L; ++i) t += row[i];
        acc[static_cast<size_t>(ob)] += t;
      } else {
        double* dst = acc.data() + ob;
        for (int64_t i = 0; i < L; ++i) dst[i] += row[i];
      }
      for (size_t d = r - 1; d-- > 0;) {
        ob += os[d];
        if (++index[d] < dims[d]) break;
        ob -= os[d] * dims[d];
        index[d] = 0;
      }
    }
  }
  Tensor out = Tensor::empty(out_shape);
  for (int64_t i = 0; i < out_n; ++i) out.data()[i] = static_cast<float>(acc[static_cast<size_t>(i)] * scale);
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const Shape& gs = g.shape();
  const size_t lead = gs.size() - shape.size();
  std::vector<bool> reduced(gs.size(), false);
  for (size_t i = 0; i < gs.size(); ++i)
    reduced[i] = i < lead || (shape[i - lead] == 1 && gs[i] != 1);
  return reduce_sum_keepdim(g, reduced).view(shape);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  Tensor out = Tensor::empty(shape);
  BroadcastPlan plan = make_broadcast_plan(x.shape(), x.shape(), shape);
  for_each_broadcast(plan, x.data(), x.data(), out.data(), [](float a, float) { return a; });
  return out;
}

}  // namespace detail
}  // namespace minidl
