#!/usr/bin/env bash
# Builds the release packages into dist/:
#   dist/caretaker-agent-VERSION-x64.msi   the Windows agent (exe + CaretakerAgent service)
# Each package is one function below; `package.sh msi` builds only the MSI. (The Linux .debs
# of the collector and agent are to be added as further functions in the same way.)
# Needs: the pinned toolchain with the x86_64-pc-windows-gnu target, gcc-mingw-w64-x86-64,
# wixl and msitools (Debian packages; scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
dist=dist
mkdir -p "$dist"

need() {
  command -v "$1" >/dev/null || { echo "package.sh: $1 is missing (apt-get install $2)" >&2; exit 69; }
}

# The Windows exe, cross-built: target/x86_64-pc-windows-gnu/release/caretaker-agent.exe.
windows_exe() {
  need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
  cargo build --release --locked --target x86_64-pc-windows-gnu -p caretaker-agent >&2
  local exe=target/x86_64-pc-windows-gnu/release/caretaker-agent.exe
  local size
  size=$(stat -c %s "$exe")
  if [ "$size" -gt $((8 * 1024 * 1024)) ]; then
    echo "package.sh: $exe is $size bytes, over the 8 MiB budget" >&2
    exit 1
  fi
  echo "$exe"
}

msi() {
  need wixl wixl
  local exe out
  exe=$(windows_exe)
  out="$dist/caretaker-agent-$version-x64.msi"
  # wixl wants the exe's path relative to the current directory.
  wixl --arch x64 -D Version="$version" -D Exe="$exe" -o "$out" deploy/windows/caretaker-agent.wxs
  echo "$out"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(msi)
for t in "${targets[@]}"; do
  case "$t" in
    msi) msi ;;
    *) echo "package.sh: unknown package '$t' (known: msi)" >&2; exit 2 ;;
  esac
done
