#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need when it is
# missing, then runs formatting, lints, the Windows cross-check and every test.
# Run as root (CI does); network-namespace tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in snmpd snmp snmpsim python3-aiosmtpd nmap fping arp-scan iproute2 curl gcc-mingw-w64-x86-64 dpkg \
    chromium chromium-driver systemd adduser openssl poppler-utils; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || need+=("$pkg")
done
# The Windows agent's peers: Wine (64-bit only: no i386 architecture needed), msitools/wixl.
need_wine=()
for pkg in wine wine64 msitools wixl; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || need_wine+=("$pkg")
done
if [ ${#need[@]} -gt 0 ] || [ ${#need_wine[@]} -gt 0 ]; then
  echo "Installing test dependencies: ${need[*]} ${need_wine[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
  [ ${#need_wine[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need_wine[@]}" >/dev/null
fi

# The toolchain comes from rust-toolchain.toml via rustup, but rustup does not add that file's
# targets to a toolchain that is already installed: add the missing ones.
rustup show active-toolchain >/dev/null
targets=$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '" ' | tr ',' ' ')
for target in $targets; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

# The .deb test (tests/packages.rs) builds packages with cargo-deb: a few CPU-minutes to
# install once, pinned so its behaviour does not move under the test.
if ! command -v cargo-deb >/dev/null; then
  echo "Installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0
fi

# Each step's start, with the time since the suite began, so a slow run shows where it went.
began=$SECONDS
step() { printf '== [%dm%02ds] %s\n' $(((SECONDS - began) / 60)) $(((SECONDS - began) % 60)) "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo clippy (Windows agent; a compile error fails it as cargo check would)"
cargo clippy -p caretaker-agent --all-targets --target x86_64-pc-windows-gnu --locked -- -D warnings
step "build the binaries the end-to-end tests run (and the release Windows agent for Wine)"
cargo build --workspace --bins --locked
cargo build --release --target x86_64-pc-windows-gnu -p caretaker-agent --locked
ls -l target/x86_64-pc-windows-gnu/release/caretaker-agent.exe
step "Windows unit tests of the agent, under Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/tests/wine/run.sh" \
  cargo test --target x86_64-pc-windows-gnu -p caretaker-agent --lib --locked
step "fuzz every parser of untrusted bytes briefly (scripts/fuzz.sh --long for longer)"
./scripts/fuzz.sh "${CARETAKER_FUZZ_SECONDS:-20}"
step "tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${CARETAKER_TEST_THREADS:-4}"
step "all passed"
