// Which OpenBLAS kernel set the app runs.
//
// Debian's OpenBLAS 0.3.21 picks its kernels from the CPU it recognises. On CPUs newer than the
// library (this project's Zen 5 machine, reported by the hypervisor as a generic Xeon) it
// falls back to Haswell or even Prescott (SSE3) kernels, two to four times slower than the
// AVX-512 (SkylakeX) ones the CPU can run. The choice is made when the library loads, from
// the OPENBLAS_CORETYPE environment variable, so the app sets it and re-executes itself:
//   --blas-core auto      (default) SkylakeX if the CPU has AVX-512 F/BW/DQ/VL, Haswell if
//                         it has AVX2 and FMA, else the library's own choice; a variable set
//                         by the user is kept
//   --blas-core library   the library's own choice (what the library and its tests use)
//   --blas-core NAME      that OpenBLAS core (e.g. Haswell, SkylakeX)
// After a re-execution the app checks sgemm against a plain loop on a few shapes and falls
// back to the library's choice if they disagree. `minidl bench` reports the core in use.
#pragma once

namespace minidl::app {

// Call first in main, before anything uses BLAS. May not return (execv).
void select_blas_core(int argc, char** argv);

}  // namespace minidl::app
