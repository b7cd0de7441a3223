# Sourced by scripts/test and scripts/bench: starts DynamoDB Local (scripts/dynamodb-local) in the
# background on a free port, exports DYNAMODB_ENDPOINT, and stops it by PID on exit.
# Its output goes to target/dynamodb-local.log. Any failure to start is fatal, never a skip.

# shellcheck source=scripts/lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"

DYNAMODB_STARTUP_TIMEOUT_SECONDS=30
DYNAMODB_LOG=target/dynamodb-local.log
dynamodb_pid=

dynamodb_stop() {
  local pid=$dynamodb_pid
  dynamodb_pid=
  proc_stop "DynamoDB Local" "$pid"
}

# Starts DynamoDB Local (scripts/dynamodb-local installs it when missing, and execs java, so the
# PID is the JVM's); the caller must `trap dynamodb_stop EXIT`. Any HTTP answer will do
# (DynamoDB Local says 400 to a bare GET).
dynamodb_start() {
  proc_start dynamodb_pid "DynamoDB Local" "$DYNAMODB_LOG" "$DYNAMODB_STARTUP_TIMEOUT_SECONDS" \
    scripts/dynamodb-local
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$proc_port"
}
