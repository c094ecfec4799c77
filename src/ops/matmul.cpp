// matmul and linear on sgemm.
#include "minidl/autograd.h"
#include "minidl/profiler.h"
#include "minidl/kernels/gemm.h"
#include "minidl/ops.h"

namespace minidl {

namespace {

// op(A) . op(B) with no autograd; A, B 2-D.
Tensor gemm_raw(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const int64_t M = ta ? a.size(1) : a.size(0), K = ta ? a.size(0) : a.size(1);
  const int64_t N = tb ? b.size(0) : b.size(1);
  Tensor out = Tensor::empty({M, N});
  kernels::gemm(ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, a.data(),
                static_cast<int>(a.size(1)), b.data(), static_cast<int>(b.size(1)), 0.0f, out.data(),
                static_cast<int>(N));
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  ProfileScope scope("matmul");
  MINIDL_CHECK(a.defined() && b.defined(), "matmul: operand is undefined");
  MINIDL_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: operands must be 2-D, got ", shape_to_string(a.shape()),
               " and ", shape_to_string(b.shape()));
  const int64_t ka = ta ? a.size(0) : a.size(1), kb = tb ? b.size(1) : b.size(0);
  MINIDL_CHECK(ka == kb, "matmul: inner dimensions differ: ", shape_to_string(a.shape()), (ta ? "^T" : ""), " x ",
               shape_to_string(b.shape()), (tb ? "^T" : ""), " (", ka, " vs ", kb, ")");
  Tensor out = gemm_raw(a, ta, b, tb);
  if (!needs_grad({&a, &b})) return out;
  Tensor sa = a.detach(), sb = b.detach();
  return record(out, "matmul", {a, b}, [sa, sb, ta, tb](const Tensor& g, const std::vector<bool>& needs) {
    // C = op(A) op(B):  d op(A) = dC op(B)^T,  d op(B) = op(A)^T dC; a transposed operand takes
    // the transpose of its d op(.). Every case is one sgemm with transpose flags, no copies.
    Tensor da, db;
    if (needs[0]) da = ta ? gemm_raw(sb, tb, g, true) : gemm_raw(g, false, sb, !tb);
    if (needs[1]) db = tb ? gemm_raw(g, true, sa, ta) : gemm_raw(sa, !ta, g, false);
    return std::vector<Tensor>{da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MINIDL_CHECK(x.defined() && x.dim() == 2, "linear: input must be 2-D (N, in_features), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  MINIDL_CHECK(weight.dim() == 2 && weight.size(1) == x.size(1), "linear: weight ", shape_to_string(weight.shape()),
               " does not fit input ", shape_to_string(x.shape()), " (expected [out_features, ", x.size(1), "])");
  Tensor y = matmul(x, weight, false, true);
  if (!bias.defined()) return y;
  MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias must be [", weight.size(0), "], got ",
               shape_to_string(bias.shape()));
  return add(y, bias);
}

}  // namespace minidl
