#!/usr/bin/env bash
# `make run`: the demo. Starts the local cluster, installs the CRDs, runs the operator,
# applies manifests/samples/ through the local overlay hack/samples/local/ (which adds the
# simulator's sim.stockade.dev/* annotations and a stand-in Secret) into the demo
# namespace: the namespace bootstrap, five Agents and a session of three. Shows
# `kubectl get agentsessions,agents` until every sample is in its expected phase. Exits non-zero if one is not (timeout
# STOCKADE_DEMO_TIMEOUT seconds, default 180). The operator's log: .cache/demo-operator.log.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
PY="${REPO_ROOT}/.venv/bin/python"
NAMESPACE="${STOCKADE_DEMO_NAMESPACE:-stockade-demo}"
TIMEOUT="${STOCKADE_DEMO_TIMEOUT:-180}"

bash "${HACK_DIR}/cluster-up.sh"
kubectl="$(find_bin kubectl)"
k() { "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" "$@"; }

k apply --server-side -f crds/ >/dev/null
k wait --for condition=established --timeout=60s -f crds/ >/dev/null
# The chart's admission policy (issue 9), rendered from the chart (its only source).
helm="$(find_bin helm)"
# (The demo's operator is a local process: the image value only satisfies the chart.)
"${helm}" template stockade-demo helm/stockade --set image.repository=stockade-demo \
  --show-only templates/admission-policy.yaml |
  k apply --server-side --force-conflicts -f - >/dev/null
k create namespace "${NAMESPACE}" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "${NAMESPACE}" delete agentsessions,agents --all --wait=true >/dev/null 2>&1 || true

log "starting the operator (log: .cache/demo-operator.log)"
KUBECONFIG="${STOCKADE_KUBECONFIG}" STOCKADE_NAMESPACES="${NAMESPACE}" \
  STOCKADE_ADMISSION_POLICY_BINDING=stockade-demo-references \
  STOCKADE_BACKOFF_BASE_SECONDS=2 STOCKADE_METRICS_PORT=0 STOCKADE_HEALTH_PORT=0 \
  "${PY}" -m stockade >"${REPO_ROOT}/.cache/demo-operator.log" 2>&1 &
operator_pid=$!
trap 'kill "${operator_pid}" 2>/dev/null || true; wait "${operator_pid}" 2>/dev/null || true' EXIT

# The samples as users get them, plus the simulator's fixtures, in the demo namespace
# (kustomize renames the samples' Namespace `agents` too).
demo_dir="${REPO_ROOT}/.cache/demo-samples"
mkdir -p "${demo_dir}"
cat >"${demo_dir}/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ${NAMESPACE}
resources:
  - ../../hack/samples/local
EOF
k apply -k "${demo_dir}"
declare -A expected=([hello-world]=Succeeded [model-call]=Succeeded [coding-agent]=Succeeded
  [flaky]=Failed [watcher]=Running
  [review-security]=Succeeded [review-tests]=Succeeded [review-docs]=Succeeded)

phase_of() { k -n "${NAMESPACE}" get agent "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true; }

start=${SECONDS}
while true; do
  settled=true
  for name in "${!expected[@]}"; do
    [[ "$(phase_of "${name}")" == "${expected[${name}]}" ]] || settled=false
  done
  [[ "$(k -n "${NAMESPACE}" get agentsession review-team -o jsonpath='{.status.phase}' 2>/dev/null)" == Succeeded ]] || settled=false
  echo "--- $((SECONDS - start))s"
  k -n "${NAMESPACE}" get agentsessions,agents
  if [[ "${settled}" == true ]]; then
    log "every sample reached its expected phase in $((SECONDS - start))s"
    k -n "${NAMESPACE}" get agentsessions
    k -n "${NAMESPACE}" get agents -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,REASON:.status.reason,ATTEMPTS:.status.attempts,RESULT:.status.result'
    exit 0
  fi
  if (( SECONDS - start > TIMEOUT )); then
    log "samples did not settle within ${TIMEOUT}s; operator log tail:"
    tail -n 40 "${REPO_ROOT}/.cache/demo-operator.log" >&2
    exit 1
  fi
  sleep 3
done
