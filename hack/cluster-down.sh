#!/usr/bin/env bash
# Stop and delete the local control plane (idempotent: nothing to do is not an error).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export KWOK_WORKDIR
if kwokctl="$(find_bin kwokctl)" &&
  "${kwokctl}" get clusters 2>/dev/null | grep -qx "${STOCKADE_CLUSTER_NAME}"; then
  "${kwokctl}" delete cluster --name "${STOCKADE_CLUSTER_NAME}"
  log "cluster ${STOCKADE_CLUSTER_NAME} deleted"
else
  log "cluster ${STOCKADE_CLUSTER_NAME} is not running"
fi
rm -f "${STOCKADE_KUBECONFIG}"
