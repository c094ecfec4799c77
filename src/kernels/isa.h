// Which kernel variant this translation unit is (not installed). CMake compiles every source of
// src/kernels (but dispatch.cpp and peak.cpp) three times, with MINIDL_KERNEL_ISA 0 (ref, plain
// C++ for any x86-64), 1 (avx2: AVX2 + FMA) and 2 (avx512: F, DQ, BW, VL), each into its own
// namespace minidl::kernels::isa_ref / isa_avx2 / isa_avx512; dispatch.cpp picks one at run time
// (kernels/dispatch.h).
//
// The ISA is switched on by a target pragma here, not by -m flags on the command line, so that
// what comes before this header (the standard library, the public headers and their inline
// functions) is compiled for plain x86-64 in every variant. Their out-of-line copies are merged
// by the linker across variants, and a copy compiled for AVX-512 could otherwise end up serving
// the reference path on a CPU without it. Everything from here on is the variant's own: include
// this header, and the headers that include it (simd.h, tiles.h, internal.h), after every other
// include, and end the file with isa_end.h. tests/check_isa_symbols.sh checks the built library for leaks.
#pragma once

// GCC 12 warns that the internal undefined vector of _mm512_min_ps, _mm512_max_ps and the
// unpack and 128-bit shuffle intrinsics "may be" or "is used uninitialized" when they are inlined
// (a false positive in its own header); the state at the header's location is what counts, so it
// is set around the include.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <limits>
#include <vector>

#include "minidl/kernels/activation.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/kernels/bn_pool_act.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/kernels/max_pool2d.h"
#include "functions.h"

#if !defined(MINIDL_KERNEL_ISA)
#error "src/kernels/isa.h: MINIDL_KERNEL_ISA is set by CMake for the kernel variants only"
#endif

// MINIDL_AVX512 / MINIDL_AVX2: 1 in that variant. (The compiler's own __AVX512F__ does not
// follow a target pragma in C++: it reflects the command line only.)
#if MINIDL_KERNEL_ISA == 2
#define MINIDL_AVX512 1
#define MINIDL_AVX2 1
#define MINIDL_ISA_NS isa_avx512
#elif MINIDL_KERNEL_ISA == 1
#define MINIDL_AVX512 0
#define MINIDL_AVX2 1
#define MINIDL_ISA_NS isa_avx2
#else
#define MINIDL_AVX512 0
#define MINIDL_AVX2 0
#define MINIDL_ISA_NS isa_ref
#endif

// (Each spelled out: a pragma's argument is not macro-expanded.)
#if MINIDL_KERNEL_ISA == 2 && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl"))), apply_to = function)
#elif MINIDL_KERNEL_ISA == 2
#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")
#elif MINIDL_KERNEL_ISA == 1 && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif MINIDL_KERNEL_ISA == 1
#pragma GCC target("avx2,fma")
#endif

// Every kernel entry point of this variant, declared with the public function's type, so that
// a variant's kernels call each other, not the dispatcher. (Calls whose arguments are of
// minidl::kernels types, Act or Conv2dGeometry, name the variant: MINIDL_ISA_NS::im2col(...).
// Argument-dependent lookup would otherwise find the public function too.)
namespace minidl::kernels::MINIDL_ISA_NS {
#define MINIDL_DECLARE_KERNEL(f) decltype(::minidl::kernels::f) f;
MINIDL_KERNEL_FUNCTIONS(MINIDL_DECLARE_KERNEL)
#undef MINIDL_DECLARE_KERNEL
}  // namespace minidl::kernels::MINIDL_ISA_NS
