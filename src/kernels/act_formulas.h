// The activation table's formulas (kernels/activation.h) as templates of this variant (not
// installed): Formula<Act::Tanh>::forward(x) for a float or a vec::V, the same expression.
#pragma once

#include "vec.h"

namespace minidl::kernels::MINIDL_ISA_NS {

// What the formulas call, for float and for the variant's vector (declarations, not
// directives: the variant's own kernels named tanh or sigmoid must not hide them).
namespace formula_math {
using act_math::exp;
using act_math::select;
using act_math::sigmoid;
using act_math::tanh;
#if MINIDL_AVX2
using vec::exp;
using vec::select;
using vec::sigmoid;
using vec::tanh;
#endif
}  // namespace formula_math

template <Act A>
struct Formula;

#define MINIDL_ACT_FORMULA(E, name, torch, needs_x, fwd, bwd) \
  template <>                                                 \
  struct Formula<Act::E> {                                    \
    template <class T>                                        \
    static T forward(T x) {                                   \
      using formula_math::exp, formula_math::select;          \
      using formula_math::sigmoid, formula_math::tanh;        \
      return fwd;                                             \
    }                                                         \
    template <class T>                                        \
    static T backward(T g, T x, T y) {                        \
      using formula_math::exp, formula_math::select;          \
      using formula_math::sigmoid, formula_math::tanh;        \
      (void)x, (void)y;                                       \
      return bwd;                                             \
    }                                                         \
  };
MINIDL_ACTIVATIONS(MINIDL_ACT_FORMULA)
#undef MINIDL_ACT_FORMULA

// f(act) with f called as f(Formula<A>{}) for the table's activation a (Identity: f(nullptr)).
template <class F>
decltype(auto) with_formula(Act a, F&& f) {
  switch (a) {
#define MINIDL_ACT_CASE(E, ...) \
  case Act::E: return f(Formula<Act::E>{});
    MINIDL_ACTIVATIONS(MINIDL_ACT_CASE)
#undef MINIDL_ACT_CASE
    case Act::Identity: break;
  }
  return f(nullptr);
}

}  // namespace minidl::kernels::MINIDL_ISA_NS
