#!/usr/bin/env bash
# The main job on embedded defaults: builds the collector and agent, then starts a collector
# on loopback with an agent for this machine, and prints the API address and token, the
# config it wrote (caretaker-demo/collector.toml) and the CLI command to use with it.
# Nothing is scanned: the demo config lists no ranges.
#
# Flags pass through to `caretaker-collector demo`:
#   --dir DIR     where the demo keeps its config, store, tokens and agent state (caretaker-demo)
#   --grpc ADDR   where agents connect (127.0.0.1:50051)
#   --http ADDR   the JSON API (127.0.0.1:8080); port 0 picks any free port
#
# It builds exactly what ./scripts/test.sh builds (`cargo build --workspace --bins`, the
# debug profile), so whichever of the two runs second finds the build done.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/debug"
if [ ! -x "$bin/caretaker-collector" ] || [ ! -x "$bin/caretaker-agent" ]; then
  echo "Building Caretaker first: about 3 minutes on 2 idle cores (more on a busy machine); later runs reuse the build." >&2
fi
cargo build --workspace --bins --locked
exec "$bin/caretaker-collector" demo "$@"
