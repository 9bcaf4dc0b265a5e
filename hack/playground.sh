#!/usr/bin/env bash
# A real playground: `make playground` brings up the local control plane with the real
# gVisor node (hack/node-up.sh), installs the CRDs and the chart's admission policy,
# starts the operator in the background (it keeps running after this script), and runs
# one Agent under gVisor on that node, waiting until it Succeeded. Then `kubectl
# stockade` works against it (the commands are printed). `make playground-down` (this
# script with `down`) stops the operator by its PID, the node (hack/node-down.sh, which
# restores what node-up changed) and the control plane. Needs root; builds what is
# missing first (binaries, the node's packages and images: minutes on a cold machine).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
[[ ${EUID} -eq 0 ]] || die "the playground's real node needs root (kubelet, containerd, runsc)"
PY="${REPO_ROOT}/.venv/bin/python"
NAMESPACE="${STOCKADE_PLAYGROUND_NAMESPACE:-playground}"
STATE="${REPO_ROOT}/.cache/playground"
PID_FILE="${STATE}/operator.pid"
TAINT_KEY=stockade.dev/real-node
IMAGE=localhost/stockade/e2e-agent:1
mkdir -p "${STATE}"

stop_operator() { stop_pid_file "the operator" "${PID_FILE}"; }

if [[ "${1:-up}" == down ]]; then
  stop_operator
  bash "${HACK_DIR}/node-down.sh"
  bash "${HACK_DIR}/cluster-down.sh"
  log "playground down"
  exit 0
fi

start=${SECONDS}
bash "${HACK_DIR}/k8s-binaries.sh"
bash "${HACK_DIR}/node-binaries.sh"
bash "${HACK_DIR}/node-up.sh"
kubectl="$(find_bin kubectl)"
helm="$(find_bin helm)"
k() { "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" "$@"; }
k apply --server-side -f crds/ >/dev/null
k wait --for condition=established --timeout=60s -f crds/ >/dev/null
# The chart's admission policy (its only source); the operator is a local process here,
# so the image value only satisfies the chart.
"${helm}" template stockade-playground helm/stockade --set image.repository=stockade-playground \
  --show-only templates/admission-policy.yaml |
  k apply --server-side --force-conflicts -f - >/dev/null
k create namespace "${NAMESPACE}" --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace "${NAMESPACE}" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null

stop_operator
log "starting the operator in the background (log: .cache/playground/operator.log)"
KUBECONFIG="${STOCKADE_KUBECONFIG}" STOCKADE_NAMESPACES="${NAMESPACE}" \
  STOCKADE_ADMISSION_POLICY_BINDING=stockade-playground-references \
  STOCKADE_ALLOWED_TOLERATION_KEYS="${TAINT_KEY}" \
  STOCKADE_METRICS_PORT=0 STOCKADE_HEALTH_PORT=0 \
  setsid nohup "${PY}" -m stockade >"${STATE}/operator.log" 2>&1 </dev/null &
echo $! >"${PID_FILE}"

k -n "${NAMESPACE}" delete agent hello --ignore-not-found --wait=true >/dev/null
k -n "${NAMESPACE}" apply -f - >/dev/null <<YAML
apiVersion: stockade.dev/v1alpha1
kind: Agent
metadata:
  name: hello
spec:
  image: ${IMAGE}
  task: Say hello from a gVisor sandbox.
  config: {mode: exit}
  runtimeClassName: gvisor
  nodeSelector: {${TAINT_KEY}: "true"}
  tolerations:
    - {key: ${TAINT_KEY}, operator: Equal, value: "true", effect: NoSchedule}
YAML
log "waiting for Agent ${NAMESPACE}/hello to run under gVisor"
k -n "${NAMESPACE}" wait agent/hello --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s >/dev/null ||
  { k -n "${NAMESPACE}" describe agent hello >&2; tail -n 40 "${STATE}/operator.log" >&2; exit 1; }
log "playground up in $((SECONDS - start))s; it keeps running until \`make playground-down\`"
cat <<EOF

  export KUBECONFIG=${STOCKADE_KUBECONFIG} PATH=${REPO_ROOT}/.venv/bin:\$(dirname ${kubectl}):\$PATH
  kubectl stockade result hello -n ${NAMESPACE}      # what the agent reported (its kernel: gVisor's)
  kubectl stockade describe hello -n ${NAMESPACE}
  kubectl -n ${NAMESPACE} get agents                 # more: copy hello with another name and task

EOF
