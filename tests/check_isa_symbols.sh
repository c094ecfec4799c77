#!/usr/bin/env bash
# Checks that the wide instructions in a portable libminidl stay in their variants: a function
# that uses AVX (VEX or EVEX encodings, ymm or zmm registers) must belong to the avx2 or avx512
# kernels (namespace minidl::kernels::isa_avx2 / isa_avx512) or be one of the FMA-peak loops, and
# one that uses AVX-512 (zmm or mask registers) to the avx512 kernels or its peak loop. A
# function outside them with such code (an inline function or template instantiation compiled
# under a variant's target and kept by the linker for everyone) would crash the reference path
# on an older CPU. Usage: check_isa_symbols.sh path/to/libminidl.so
set -euo pipefail
lib="$1"
command -v objdump >/dev/null || { echo "SKIP: objdump not found"; exit 0; }
objdump -d -C --no-show-raw-insn "$lib" | awk '
  /^[0-9a-f]+ <.*>:$/ { name = $0; next }
  /^ +[0-9a-f]+:\t/ {
    split($0, f, "\t"); insn = f[2]
    wide512 = insn ~ /%zmm|%k[1-7]/
    avx = wide512 || insn ~ /^v[a-z]/ || insn ~ /%ymm/
    if (!avx) next
    ok512 = name ~ /minidl::kernels::isa_avx512::/ || name ~ /loop_avx512/
    ok = ok512 || name ~ /minidl::kernels::isa_avx2::/ || name ~ /loop_avx2/
    if ((wide512 && !ok512) || !ok) {
      if (!(name in seen)) { seen[name] = 1; bad++; print "outside its variant: " name "\n    " insn }
    }
    if (ok512 && wide512) n512++
    else if (ok) n2++
  }
  END {
    printf "AVX-512 instructions in the avx512 kernels: %d, other AVX instructions in the variants: %d\n", n512, n2
    if (n512 == 0 || n2 == 0) { print "no variant code found: is this a portable build of libminidl?"; exit 1 }
    if (bad) { printf "%d functions use instructions of a variant outside it\n", bad; exit 1 }
  }'
