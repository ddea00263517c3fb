#!/usr/bin/env bash
# Runs pico's server benchmarks on release builds; results go to stdout.
# Usage: bench/run.sh [tunnel|latency|creates|idle-tunnels|load|exec|files|processes|all]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -q
what=${1:-all}
run() { ./target/release/pico-bench --bin-dir target/release "$@"; }
case "$what" in
  tunnel) run tunnel ;;
  latency) run latency ;;
  creates) run creates ;;
  idle-tunnels) run idle-tunnels ;;
  load) run load ;;
  exec) run exec ;;
  files) run files ;;
  processes) run processes ;;
  all) run tunnel; run latency; run creates; run idle-tunnels; run load; run exec; run files; run processes ;;
  *) echo "usage: $0 [tunnel|latency|creates|idle-tunnels|load|exec|files|processes|all]" >&2; exit 2 ;;
esac
