# Sourced by scripts/lib/dynamodb.sh and scripts/lib/sqs.sh: runs a local server in the background
# on a free port, waits until it answers, and stops it again by its PID (never by name, so nothing
# else on the machine is touched). Any failure to start is fatal, never a skip.

proc_port= # the port of the last server proc_start started

proc_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

proc_answers() { # anything accepting a TCP connection on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# proc_start PID_VAR NAME LOG TIMEOUT_SECONDS COMMAND [ARGS...]
# Runs `COMMAND ARGS... PORT` in the background with a free PORT appended, its output in LOG,
# and returns once something answers on PORT, with proc_port set. The PID goes into the variable
# named PID_VAR at once, so that the caller's EXIT trap stops the server even if start-up fails.
proc_start() {
  local pid_var=$1 name=$2 log=$3 timeout=$4
  shift 4
  mkdir -p "$(dirname "$log")"
  : >"$log"
  # The port is picked before the server binds it, so another process may take it in between:
  # if the server exits during start-up, try again on a new port.
  local attempt port pid started_at status
  for attempt in 1 2 3; do
    port=$(proc_free_port)
    started_at=$SECONDS
    echo "starting $name on port $port (attempt $attempt; log: $log)" >&2
    "$@" "$port" >>"$log" 2>&1 </dev/null &
    pid=$!
    printf -v "$pid_var" '%s' "$pid"
    while kill -0 "$pid" 2>/dev/null && ! proc_answers "$port"; do
      if [ $((SECONDS - started_at)) -ge "$timeout" ]; then
        echo "$name did not answer on port $port within ${timeout}s; its log:" >&2
        cat "$log" >&2
        exit 1
      fi
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) answers on http://127.0.0.1:$port after $((SECONDS - started_at))s" >&2
      proc_port=$port
      return 0
    fi
    wait "$pid" && status=0 || status=$?
    printf -v "$pid_var" '%s' ''
    echo "$name exited with status $status during start-up" >&2
  done
  echo "giving up on $name; its log:" >&2
  cat "$log" >&2
  exit 1
}

# proc_stop NAME PID: SIGTERM, up to 10 s for a clean exit, then SIGKILL. No PID: nothing to do.
proc_stop() {
  local name=$1 pid=$2
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
