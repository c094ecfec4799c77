// The machine's limit for this library's arithmetic: a register-resident loop of independent
// fused multiply-adds per thread, with the widest vectors the CPU runs (read at run time), so
// that `minidl bench` can report a model's GFLOP/s as a percentage of what the cores can do.
#pragma once

#include <cstdint>
#include <string>

namespace minidl::kernels {

// "avx512" or "avx2" (with FMA), whichever is the widest this CPU runs (CPUID, read once), or
// "scalar". `force` ("avx2", "scalar") picks a narrower one; an ISA the CPU lacks is refused.
std::string fma_peak_isa(const std::string& force = "");

// GFLOP/s of `threads` OpenMP threads, each running the loop for about `seconds`; the best of
// `repeats` (it is a ceiling: anything else running only lowers it).
double fma_peak_gflops(int threads, double seconds = 0.1, int repeats = 3, const std::string& isa = "");

// The loop's result after `iterations` on one thread, for a test to compare with the closed
// form of a <- a * b + c (so the loop cannot have been optimised away): every accumulator
// starts at a0, the sum of all lanes is returned.
double fma_peak_checksum(int64_t iterations, float a0, float b, float c, const std::string& isa);
int fma_peak_lanes(const std::string& isa);  // floats summed by fma_peak_checksum

// The kernel variant the model runs on: isa_name(active_isa()) (kernels/dispatch.h).
const char* model_kernels_isa();

}  // namespace minidl::kernels
