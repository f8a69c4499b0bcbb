# Bash helpers for the desktop package test: a private Xvfb display,
# waiting for a window, and ending process trees by PID.
# Source this file; it defines functions only.

# Starts Xvfb on a display number it picks itself (-displayfd) and sets
# XVFB_PID and DISPLAY. $1 is a folder for its log and display file.
start_xvfb() {
  local dir="$1" waited=0
  Xvfb -displayfd 1 -screen 0 1280x900x24 -nolisten tcp >"$dir/xvfb.display" 2>"$dir/xvfb.log" &
  XVFB_PID=$!
  while [ ! -s "$dir/xvfb.display" ]; do
    if ! kill -0 "$XVFB_PID" 2>/dev/null || [ "$waited" -ge 100 ]; then
      echo "Xvfb did not start within 10 s; its log:" >&2
      cat "$dir/xvfb.log" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  DISPLAY=":$(tr -d '[:space:]' <"$dir/xvfb.display")"
  export DISPLAY
}

# Prints the PIDs of every descendant of $1, each child before its own
# descendants.
descendant_pids() {
  local pid child
  for pid in "$@"; do
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
      echo "$child"
      descendant_pids "$child"
    done
  done
}

# Sends SIGTERM to $1 and its descendants, waits up to 5 s, then sends
# SIGKILL to whatever is left.
end_tree() {
  local root="$1" pids pid waited=0
  # shellcheck disable=SC2207
  pids=($(descendant_pids "$root") "$root")
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while [ "$waited" -lt 50 ]; do
    local alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ]; then
        alive=1
      fi
    done
    [ "$alive" -eq 0 ] && return 0
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Waits up to $2 seconds until the display has a mapped window titled $1.
# Returns 1 on timeout, or at once if the process $3 has exited.
wait_for_window() {
  local title="$1" limit_tenths=$(($2 * 10)) pid="$3" waited=0
  while [ "$waited" -lt "$limit_tenths" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if xwininfo -root -tree 2>/dev/null | grep -q "\"$title\""; then
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  return 1
}

# Prints a port that was free on 127.0.0.1 a moment ago.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
