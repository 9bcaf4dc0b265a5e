#!/usr/bin/env bash
# `make e2e`: first, as their own timed steps outside any test timeout, the builds and
# installs: the control plane's binaries (hack/k8s-binaries.sh), the node's Debian
# packages, binaries and images (hack/node-binaries.sh), each a no-op when cached. Then
# the end-to-end tests (tests/e2e), whose session fixture brings the real node up
# (hack/node-up.sh: the control plane if it is not running, containerd + gVisor +
# kubelet, the images imported; it builds nothing there and names what is missing; its
# time is printed as "node-up"), then the node down (hack/node-down.sh) whatever happened: a failing
# node-up or test, or an interrupt, still restores the machine (sysctls, bridge,
# iptables chains, mounts, cgroups, host paths). The control plane is left
# running (hack/cluster-down.sh stops it). The Debian packages it installed stay.
# Arguments go to pytest. Needs root. Prints each step's time and the total.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
[[ ${EUID} -eq 0 ]] || die "the real node needs root (kubelet, containerd, runsc)"
PY="${REPO_ROOT}/.venv/bin/python"
start=${SECONDS}

# shellcheck disable=SC2317  # run by the EXIT trap
down() {
  local status=$? down_start=${SECONDS}
  trap - EXIT INT TERM
  bash "${HACK_DIR}/node-down.sh" || { log "node-down failed"; ((status)) || status=1; }
  log "node-down took $((SECONDS - down_start))s; make e2e took $((SECONDS - start))s (exit ${status})"
  exit "${status}"
}
trap down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {  # step LABEL CMD...: run CMD as its own step, log how long it took
  local label="$1" step_start=${SECONDS}; shift
  "$@"
  log "${label} took $((SECONDS - step_start))s"
}
step "control-plane binaries (hack/k8s-binaries.sh)" bash "${HACK_DIR}/k8s-binaries.sh"
step "node packages, binaries and images (hack/node-binaries.sh)" bash "${HACK_DIR}/node-binaries.sh"

status=0
"${PY}" -m pytest tests/e2e -v --durations=0 "$@" || status=$?
log "pytest tests/e2e (node-up included) took $((SECONDS - start))s"
exit "${status}"
