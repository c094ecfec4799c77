// Every activation, defined once. A row of MINIDL_ACTIVATIONS is all an activation needs: the
// spec layer and --act (by its name), the printout (its PyTorch module), the autograd op, the
// fused convolution blocks and each kernel variant's SIMD loop all expand this table.
//
// Columns: enum value; spec and CLI name; PyTorch module; whether the derivative needs the
// input x (else it is computed from the output y alone, which the fused blocks keep: an
// activation that needs x is never fused); y = f(x); and dx = g * f'(x) for the output gradient
// g. The two formulas are written once, in x, y and g, and compiled for float and for each
// variant's vector type (src/kernels/vec.h: the same operators, select, exp, tanh, sigmoid), so
// the SIMD form is the formula itself. Adding an activation is one row plus its PyTorch name in
// scripts/pytorch_peer.py and scripts/minidl_spec.py; tests/test_activations.cpp checks every
// row (finite differences, each variant against the float formula, the spec layer).
//
// sigmoid and tanh keep their own vector routines (exp and tanh in src/kernels/simd.h, Cephes'
// polynomials); ReLU's `x <= 0 ? 0 : x` keeps a NaN a NaN and, as PyTorch's threshold_backward,
// passes no gradient at exactly 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#define MINIDL_ACTIVATIONS(X)                                                                             \
  X(Sigmoid, "sigmoid", "Sigmoid", false, 1.0f / (1.0f + exp(-x)), g * y * (1.0f - y))                    \
  X(ReLU, "relu", "ReLU", false, select(x <= 0.0f, 0.0f, x), select(y <= 0.0f, 0.0f, g))                 \
  X(Tanh, "tanh", "Tanh", false, tanh(x), g * (1.0f - y * y))                                             \
  X(Swish, "swish", "SiLU", true, x / (1.0f + exp(-x)), g * (sigmoid(x) + y * (1.0f - sigmoid(x))))

namespace minidl::kernels {

// The table's activations, then Identity (the fused blocks' "no activation").
enum class Act {
#define MINIDL_ACT_ENUM(E, ...) E,
  MINIDL_ACTIVATIONS(MINIDL_ACT_ENUM)
#undef MINIDL_ACT_ENUM
      Identity
};

// The float forms of what the formulas call.
namespace act_math {
using std::exp;
using std::tanh;
inline float select(bool c, float a, float b) { return c ? a : b; }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace act_math

// One element, in float: the reference every vector form is tested against.
inline float act_forward(Act a, float x) {
  using act_math::exp, act_math::select, act_math::sigmoid, act_math::tanh;
  switch (a) {
#define MINIDL_ACT_FORWARD(E, name, torch, needs_x, fwd, bwd) \
  case Act::E: return fwd;
    MINIDL_ACTIVATIONS(MINIDL_ACT_FORWARD)
#undef MINIDL_ACT_FORWARD
    case Act::Identity: break;
  }
  return x;
}
inline float act_backward(Act a, float g, float x, float y) {
  using act_math::exp, act_math::select, act_math::sigmoid, act_math::tanh;
  (void)x, (void)y;
  switch (a) {
#define MINIDL_ACT_BACKWARD(E, name, torch, needs_x, fwd, bwd) \
  case Act::E: return bwd;
    MINIDL_ACTIVATIONS(MINIDL_ACT_BACKWARD)
#undef MINIDL_ACT_BACKWARD
    case Act::Identity: break;
  }
  return g;
}

struct ActInfo {
  Act act;
  const char* name;   // spec token and --act value
  const char* torch;  // PyTorch's module, as printed: "SiLU" -> "SiLU()"
  bool needs_input;   // its derivative reads x: kept unfused
};
// The table's rows in order (not Identity).
inline const std::vector<ActInfo>& activations() {
  static const std::vector<ActInfo> rows = {
#define MINIDL_ACT_INFO(E, name, torch, needs_x, fwd, bwd) {Act::E, name, torch, needs_x},
      MINIDL_ACTIVATIONS(MINIDL_ACT_INFO)
#undef MINIDL_ACT_INFO
  };
  return rows;
}
inline const ActInfo& act_info(Act a) {
  for (const ActInfo& i : activations())
    if (i.act == a) return i;
  static const ActInfo identity{Act::Identity, "identity", "Identity", false};
  return identity;
}

// y = f(x) and dx = g * f'(x) over n values, in the active variant's vectors (kernels/dispatch.h).
// x may be null in the backward of an activation whose derivative needs only y; y may alias x
// in the forward.
void activation_forward(Act a, const float* x, float* y, int64_t n);
void activation_backward(Act a, const float* g, const float* x, const float* y, float* dx, int64_t n);

}  // namespace minidl::kernels
