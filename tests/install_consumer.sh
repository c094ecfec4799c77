#!/usr/bin/env bash
# ctest: installs minidl from BUILD_DIR into a temporary prefix, then builds and runs the
# out-of-tree program in tests/consumer against it, once through the CMake package and once
# through pkg-config. Fails on any step, and if the installed interface carries -march.
#   tests/install_consumer.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"; build="$2"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
for f in lib/cmake/minidl/minidlConfig.cmake lib/cmake/minidl/minidlConfigVersion.cmake lib/pkgconfig/minidl.pc \
         include/minidl/nn/registry.h bin/minidl; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
if grep -r -- "-march" "$prefix/lib/cmake/minidl" "$prefix/lib/pkgconfig"; then
  echo "the installed interface carries -march"; exit 1
fi
"$prefix/bin/minidl" --help > /dev/null  # the installed app finds the installed library

# MINIDL_CONSUMER_FLAGS: extra compile and link flags (the sanitizer build sets them)
extra="${MINIDL_CONSUMER_FLAGS:-}"
cmake -S "$src/tests/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" > "$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/build/consumer" "$work/tiny.safetensors"
[ -s "$work/tiny.safetensors" ] || { echo "the consumer saved nothing"; exit 1; }

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046,SC2086
c++ -std=c++17 -O1 $extra "$src/tests/consumer/main.cpp" -o "$work/consumer-pc" $(pkg-config --cflags --libs minidl) \
  -Wl,-rpath,"$(pkg-config --variable=libdir minidl)"
"$work/consumer-pc" "$work/tiny2.safetensors"
echo "install and consume: ok"
