#!/usr/bin/env bash
# The newcomer's path, as the README writes it (`.ci/run`): `make playground`, then
# `kubectl stockade result hello -n playground` prints what the Agent reported from
# inside gVisor (its kernel release ends in -gvisor), then `make playground-down`, which
# runs whatever happened. Needs root.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
trap 'bash "${HACK_DIR}/playground.sh" down' EXIT
bash "${HACK_DIR}/playground.sh" up
kubectl="$(find_bin kubectl)"
out="$(KUBECONFIG="${STOCKADE_KUBECONFIG}" PATH="${REPO_ROOT}/.venv/bin:$(dirname "${kubectl}"):${PATH}" \
  kubectl stockade result hello -n playground)"
printf '%s\n' "${out}"
[[ "${out}" == *-gvisor* ]] || die "kubectl stockade result did not show the gVisor kernel"
log "playground path checked"
