#!/bin/sh
# Stockade's end-to-end test agent (busybox sh, in the image hack/node/images.sh builds).
#
# It reports what the container saw, then behaves as its config says. The operator mounts
# spec.task at $STOCKADE_TASK_FILE (/etc/stockade/task) and each spec.config key as a file
# in $STOCKADE_CONFIG_DIR (/etc/stockade/config/<key>); /workspace is the workspace claim.
# Config keys (all optional):
#   mode      exit (default) | sleep | oom | fail-liveness | ignore-sigterm
#   exitCode  the exit code of mode exit (default 0)
#   seconds   how long sleep / fail-liveness / ignore-sigterm run before exiting (default 3600)
#   megabytes how much memory mode oom allocates (default 1024)
#   resumeSeconds  replaces `seconds` when /workspace shows an earlier attempt (a resumed
#             or retried Agent), so that a test can let the second attempt finish
# With a workspace, each attempt counts itself in /workspace/attempts and logs the signals
# it got in /workspace/events; the result reports both.
# The result goes to /dev/termination-log as {"result": {...}, "usage": {...}} before the
# agent exits (at once in mode exit, on SIGTERM or at the end of the other modes).
# `agent.sh probe` is the liveness probe: it fails once mode fail-liveness has started.

cfg() {  # cfg KEY DEFAULT: the config value of KEY, else DEFAULT
  if [ -n "${STOCKADE_CONFIG_DIR:-}" ] && [ -r "${STOCKADE_CONFIG_DIR}/$1" ]; then
    cat "${STOCKADE_CONFIG_DIR}/$1"
  else
    printf '%s' "$2"
  fi
}

if [ "${1:-}" = probe ]; then
  [ ! -e /tmp/unhealthy ]
  exit $?
fi

json() {  # json TEXT: TEXT as a JSON string (quotes, backslashes, tabs, newlines)
  printf '%s' "$1" | awk 'BEGIN { ORS = ""; print "\"" }
    { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
      if (NR > 1) print "\\n"; print }
    END { print "\"" }'
}

mode="$(cfg mode exit)"
seconds="$(cfg seconds 3600)"
task=""
[ -n "${STOCKADE_TASK_FILE:-}" ] && task="$(cat "${STOCKADE_TASK_FILE}" 2>&1)"
config_keys=""
# shellcheck disable=SC2012  # config keys are [-._a-zA-Z0-9]+
[ -n "${STOCKADE_CONFIG_DIR:-}" ] && config_keys="$(ls "${STOCKADE_CONFIG_DIR}" 2>&1 | tr '\n' ' ')"
rootfs_writable=false
if touch /.stockade-rootfs-probe 2>/dev/null; then rootfs_writable=true; fi
workspace=""
if [ -d /workspace ]; then
  count=$(( $(cat /workspace/attempts 2>/dev/null || echo 0) + 1 ))
  if echo "${count}" >/workspace/attempts 2>/dev/null; then
    workspace="attempts=${count} events=$(tr '\n' ',' </workspace/events 2>/dev/null)"
    [ "${count}" -gt 1 ] && seconds="$(cfg resumeSeconds "${seconds}")"
  else
    workspace="not writable"
  fi
fi
# shellcheck disable=SC2317  # called from traps
event() {  # event NAME: log NAME in /workspace/events (when there is a workspace)
  [ -d /workspace ] && echo "$1" >>/workspace/events 2>/dev/null
  return 0
}
kernel="$(uname -a)"
dmesg_head="$(dmesg 2>&1 | head -n 3 | cut -c1-200)"
cap_eff="$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)"

report() {  # report EXTRA: write the termination message
  {
    printf '{"result": {"mode": %s, "uid": "%s", "gid": "%s", "capEff": "%s",' \
      "$(json "${mode}")" "$(id -u)" "$(id -g)" "${cap_eff}"
    printf ' "kernel": %s, "dmesg": %s, "rootfsWritable": %s,' \
      "$(json "${kernel}")" "$(json "${dmesg_head}")" "${rootfs_writable}"
    printf ' "task": %s, "configKeys": %s, "workspace": %s, "event": %s},' \
      "$(json "${task}")" "$(json "${config_keys}")" "$(json "${workspace}")" "$(json "$1")"
    printf ' "usage": {"inputTokens": 12, "outputTokens": 34, "costUSD": 0.5}}\n'
  } >/dev/termination-log
}

echo "stockade e2e agent: mode=${mode} kernel=${kernel}"
case "${mode}" in
  exit)
    report "exit"
    exit "$(cfg exitCode 0)"
    ;;
  oom)
    report "oom"
    mb="$(cfg megabytes 1024)"
    # Command substitution keeps the whole output in the shell's memory.
    hog="$(head -c "$((mb * 1024 * 1024))" /dev/zero | tr '\0' x)"
    echo "allocated ${#hog} bytes without being killed"
    exit 3
    ;;
  fail-liveness)
    report "fail-liveness"
    touch /tmp/unhealthy
    sleep "${seconds}"
    exit 0
    ;;
  ignore-sigterm)
    report "ignore-sigterm"
    trap 'echo "SIGTERM ignored"; event sigterm-ignored' TERM
    end=$(( $(date +%s) + seconds ))
    while [ "$(date +%s)" -lt "${end}" ]; do sleep 1; done
    exit 0
    ;;
  sleep | *)
    trap 'event sigterm; report sigterm; exit 143' TERM
    report "started"
    # sleep in the background and wait, so that the trap runs at once on SIGTERM.
    sleep "${seconds}" &
    wait $!
    report "slept"
    exit 0
    ;;
esac
