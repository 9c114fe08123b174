#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need when it is
# missing, then runs formatting, lints, the Windows cross-check and every test.
# Run as root (CI does); network-namespace tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in snmpd snmp snmpsim python3-aiosmtpd nmap fping arp-scan iproute2 curl gcc-mingw-w64-x86-64 dpkg; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing test dependencies: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The toolchain (and its Windows target) comes from rust-toolchain.toml via rustup.
rustup show active-toolchain >/dev/null

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo check (Windows agent)"
cargo check -p caretaker-agent --target x86_64-pc-windows-gnu --locked
echo "== build the binaries the end-to-end tests run"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${CARETAKER_TEST_THREADS:-4}"
