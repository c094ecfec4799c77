// Which kernel variant runs. Every kernel in include/minidl/kernels is built three times: a
// plain C++ reference for any x86-64 ("ref", the ground truth of the tests), AVX2 + FMA
// ("avx2") and AVX-512 F/DQ/BW/VL ("avx512"). The first kernel call reads the CPU once (CPUID)
// and picks the widest variant it supports, or the one MINIDL_ISA=ref|avx2|avx512 names; a
// variant the CPU lacks is an error, not a crash. Variants differ in the order of their sums,
// not in what they compute (tests/test_dispatch.cpp runs each against the reference).
#pragma once

#include <string>
#include <vector>

namespace minidl::kernels {

enum class Isa { Ref = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);  // "ref", "avx2", "avx512"
// "ref"/"avx2"/"avx512" -> Isa; throws minidl::Error naming the choices otherwise.
Isa parse_isa(const std::string& name);
bool cpu_supports(Isa isa);
std::vector<Isa> supported_isas();  // ref first, then each wider variant the CPU runs

// The variant kernels run now: MINIDL_ISA's when it is set (minidl::Error when the CPU lacks
// it or the name is unknown), else the widest the CPU supports.
Isa active_isa();
// Run `isa` from now on (the tests' way to run every variant in one process); throws
// minidl::Error when the CPU lacks it. Not meant to be called while kernels run on other threads.
void set_active_isa(Isa isa);

}  // namespace minidl::kernels
