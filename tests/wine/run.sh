#!/usr/bin/env bash
# Cargo runner for Windows test executables: runs them under Wine in a prefix of their own
# (target/wine-unit, booted once), with the ProcessPrng shim in its system32.
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=tests/wine/run.sh \
#     cargo test --target x86_64-pc-windows-gnu -p caretaker-agent --lib
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
export WINEPREFIX="$target/wine-unit" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY
stamp="$WINEPREFIX/caretaker-unit.stamp"
want="$(wine --version) $(sha256sum "$here/processprng.c" | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$WINEPREFIX"
  wineboot -i >/dev/null 2>&1
  wineserver -w
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    "$here/processprng.c" "$here/processprng.def" -lbcrypt
  echo "$want" > "$stamp"
fi
wine "$@"
status=$?
wineserver -k 2>/dev/null || true
exit $status
