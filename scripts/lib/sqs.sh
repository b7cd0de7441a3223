# Sourced by scripts/test: starts moto's server mode (an SQS-compatible server, AWS JSON 1.0
# protocol as the Rust SDK speaks it) in the background on a free port of 127.0.0.1, exports
# SQS_ENDPOINT, and stops it by PID on exit. Needs `scripts/tools python` first (it installs
# moto[server] into .venv). Its output goes to target/sqs-local.log. Any failure to start is fatal,
# never a skip. Queues live in memory and are gone when it stops.

# shellcheck source=scripts/lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"

SQS_STARTUP_TIMEOUT_SECONDS=30
SQS_LOG=target/sqs-local.log
SQS_SERVER=.venv/bin/moto_server
sqs_pid=

sqs_stop() {
  local pid=$sqs_pid
  sqs_pid=
  proc_stop "SQS (moto server)" "$pid"
}

# The caller must `trap sqs_stop EXIT`.
sqs_start() {
  if [ ! -x "$SQS_SERVER" ]; then
    echo "$SQS_SERVER not found; run scripts/tools python (it installs moto[server])" >&2
    exit 1
  fi
  proc_start sqs_pid "SQS (moto server)" "$SQS_LOG" "$SQS_STARTUP_TIMEOUT_SECONDS" \
    "$SQS_SERVER" -H 127.0.0.1 -p
  export SQS_ENDPOINT="http://127.0.0.1:$proc_port"
}
