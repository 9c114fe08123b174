#!/usr/bin/env bash
# Builds the release packages into dist/:
#   dist/caretaker-agent-VERSION-x64.msi          the Windows agent (exe + CaretakerAgent service)
#   dist/caretaker-collector_VERSION-1_amd64.deb  the collector, its systemd unit and config
#   dist/caretaker-agent_VERSION-1_amd64.deb      the Linux agent, its systemd unit and config
# Each package is one function below: `package.sh msi`, `package.sh deb`; no argument: both.
# Needs: the pinned toolchain with the x86_64-pc-windows-gnu target, gcc-mingw-w64-x86-64,
# wixl and msitools (Debian packages; scripts/test.sh installs them); cargo-deb for the .debs
# (`cargo install cargo-deb --locked`; scripts/test.sh installs it).
# CARETAKER_DIST=DIR writes elsewhere; CARETAKER_DEB_PROFILE=dev packages the debug binaries
# already built (for the package test: no release build, faster compression).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
dist=${CARETAKER_DIST:-dist}
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

deb() {
  need cargo-deb "cargo-deb: cargo install cargo-deb --locked"
  local profile=${CARETAKER_DEB_PROFILE:-release}
  local extra=()
  if [ "$profile" = release ]; then
    cargo build --release --locked -p caretaker-collector -p caretaker-agent --bins >&2
  else
    extra=(--fast --no-strip)
  fi
  for pkg in caretaker-collector caretaker-agent; do
    cargo deb -p "$pkg" --no-build --profile "$profile" "${extra[@]}" -o "$dist/" 2> >(grep -v "dev profile\|debug symbols set\|^$" >&2)
  done
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(msi deb)
for t in "${targets[@]}"; do
  case "$t" in
    msi) msi ;;
    deb) deb ;;
    *) echo "package.sh: unknown package '$t' (known: msi, deb)" >&2; exit 2 ;;
  esac
done
