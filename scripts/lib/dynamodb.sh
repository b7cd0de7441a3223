# Sourced by scripts/test and scripts/bench: starts DynamoDB Local (scripts/dynamodb-local) in the
# background on a free port, exports DYNAMODB_ENDPOINT, and stops it by PID on exit.
# Its output goes to target/dynamodb-local.log. Any failure to start is fatal, never a skip.

DYNAMODB_STARTUP_TIMEOUT_SECONDS=30
DYNAMODB_LOG=target/dynamodb-local.log
dynamodb_pid=

dynamodb_stop() {
  [ -n "$dynamodb_pid" ] || return 0
  local pid=$dynamodb_pid
  dynamodb_pid=
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do # up to 10 s for a clean JVM exit
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "DynamoDB Local (pid $pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

dynamodb_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

dynamodb_answers() { # any HTTP answer will do (DynamoDB Local says 400 to a bare GET)
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts DynamoDB Local (scripts/dynamodb-local installs it when missing); the caller must
# `trap dynamodb_stop EXIT`.
dynamodb_start() {
  mkdir -p target
  : >"$DYNAMODB_LOG"
  # The port is picked before DynamoDB Local binds it, so another process may take it in between:
  # if DynamoDB Local exits during start-up, try again on a new port.
  local attempt port started_at status
  for attempt in 1 2 3; do
    port=$(dynamodb_free_port)
    started_at=$SECONDS
    echo "starting DynamoDB Local on port $port (attempt $attempt; log: $DYNAMODB_LOG)" >&2
    scripts/dynamodb-local "$port" >>"$DYNAMODB_LOG" 2>&1 </dev/null &
    dynamodb_pid=$!
    while kill -0 "$dynamodb_pid" 2>/dev/null && ! dynamodb_answers "$port"; do
      if [ $((SECONDS - started_at)) -ge "$DYNAMODB_STARTUP_TIMEOUT_SECONDS" ]; then
        echo "DynamoDB Local did not answer on port $port within ${DYNAMODB_STARTUP_TIMEOUT_SECONDS}s; its log:" >&2
        cat "$DYNAMODB_LOG" >&2
        exit 1
      fi
      sleep 0.2
    done
    if kill -0 "$dynamodb_pid" 2>/dev/null; then
      echo "DynamoDB Local (pid $dynamodb_pid) answers on http://127.0.0.1:$port after $((SECONDS - started_at))s" >&2
      export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
      return 0
    fi
    wait "$dynamodb_pid" && status=0 || status=$?
    dynamodb_pid=
    echo "DynamoDB Local exited with status $status during start-up" >&2
  done
  echo "giving up on DynamoDB Local; its log:" >&2
  cat "$DYNAMODB_LOG" >&2
  exit 1
}
