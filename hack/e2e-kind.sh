#!/usr/bin/env bash
# `make e2e-kind`: Stockade end to end on a real kubelet, in gVisor, for users with Docker.
#
#   1. create a kind cluster from hack/kind/cluster.yaml (containerd knows `runsc`) and
#      install gVisor into its node (hack/kind/install-gvisor.sh);
#   2. build the operator image (Dockerfile) and load it into the node;
#   3. helm install the chart (its RuntimeClass gvisor, the local image);
#   4. apply hack/kind/samples.yaml and wait until each Agent reaches the phase its
#      stockade.dev/e2e-expect annotation names (timeout STOCKADE_E2E_TIMEOUT, 300 s).
#
# Needs a reachable Docker daemon; without one it says so and exits 1 (the development
# machines and CI of this repository have none: they use the kwok cluster instead).
# kind is taken from PATH, else built from the Go module proxy (KIND_VERSION in
# hack/versions.env). STOCKADE_E2E_KEEP=1 keeps the cluster afterwards.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

CLUSTER="${STOCKADE_E2E_CLUSTER:-stockade-e2e}"
IMAGE="${STOCKADE_E2E_IMAGE:-stockade:e2e}"
NAMESPACE=stockade-system
AGENTS_NAMESPACE=stockade-e2e
TIMEOUT="${STOCKADE_E2E_TIMEOUT:-300}"

# --- prerequisites -------------------------------------------------------------------
if ! command -v docker >/dev/null 2>&1; then
  die "make e2e-kind needs Docker (to run kind and build the image), and docker is not installed"
fi
if ! docker info >/dev/null 2>&1; then
  die "make e2e-kind needs a running Docker daemon; \`docker info\` cannot reach one (the docker CLI is installed, but no engine answers)"
fi

kind="$(command -v kind || true)"
if [[ -z "${kind}" ]]; then
  kind="$(resolve_bin kind || true)"
fi
if [[ -z "${kind}" ]]; then
  command -v go >/dev/null || die "kind is not installed and go is not there to build it"
  log "building kind v${KIND_VERSION} from the Go module proxy"
  mkdir -p "${K8S_CACHE_BIN}"
  GOBIN="${K8S_CACHE_BIN}" CGO_ENABLED=0 go install "sigs.k8s.io/kind@v${KIND_VERSION}"
  kind="${K8S_CACHE_BIN}/kind"
fi
helm="$(find_bin helm)" || { bash "${HACK_DIR}/k8s-binaries.sh" && helm="$(find_bin helm)"; }
kubectl="$(find_bin kubectl)" || kubectl="$(command -v kubectl)" || die "kubectl not found"
export KIND="${kind}"

kubeconfig="${REPO_ROOT}/.cache/kind/kubeconfig"
mkdir -p "$(dirname "${kubeconfig}")"
k() { "${kubectl}" --kubeconfig "${kubeconfig}" "$@"; }

cleanup() {
  local rc=$?
  if (( rc != 0 )) && [[ -s "${kubeconfig}" ]]; then
    log "failed; operator log tail:"
    k -n "${NAMESPACE}" logs deployment/stockade --tail=40 >&2 || true
  fi
  if [[ "${STOCKADE_E2E_KEEP:-}" != 1 ]]; then
    "${kind}" delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# --- 1. cluster with gVisor ----------------------------------------------------------
start=${SECONDS}
if ! "${kind}" get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  log "creating kind cluster ${CLUSTER}"
  "${kind}" create cluster --name "${CLUSTER}" --config "${HACK_DIR}/kind/cluster.yaml" \
    --kubeconfig "${kubeconfig}" --wait 180s
fi
"${kind}" get kubeconfig --name "${CLUSTER}" >"${kubeconfig}"
bash "${HACK_DIR}/kind/install-gvisor.sh" "${CLUSTER}" "${GVISOR_VERSION}"

# --- 2. the operator image -----------------------------------------------------------
log "building ${IMAGE}"
docker build --tag "${IMAGE}" "${REPO_ROOT}"
"${kind}" load docker-image "${IMAGE}" --name "${CLUSTER}"

# --- 3. the chart ----------------------------------------------------------------------
log "installing the chart"
"${helm}" upgrade --install stockade "${REPO_ROOT}/helm/stockade" \
  --kubeconfig "${kubeconfig}" --namespace "${NAMESPACE}" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set runtimeClasses.gvisor.create=true \
  --set-json 'runtimeClasses.gvisor.nodeSelector={"sandbox.stockade.dev/gvisor":"true"}' \
  --set config.backoff.baseSeconds=2 \
  --wait --timeout 180s
k -n "${NAMESPACE}" get deployment,pods

# --- 4. the samples ------------------------------------------------------------------
k create namespace "${AGENTS_NAMESPACE}" --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace "${AGENTS_NAMESPACE}" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "${AGENTS_NAMESPACE}" apply -f "${HACK_DIR}/kind/samples.yaml"
declare -A expected=()
while read -r name phase; do
  expected[${name}]=${phase}
done < <(k -n "${AGENTS_NAMESPACE}" get agents \
  -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.annotations.stockade\.dev/e2e-expect}{"\n"}{end}')

waited=${SECONDS}
while true; do
  settled=true
  for name in "${!expected[@]}"; do
    phase="$(k -n "${AGENTS_NAMESPACE}" get agent "${name}" -o jsonpath='{.status.phase}')"
    [[ "${phase}" == "${expected[${name}]}" ]] || settled=false
  done
  k -n "${AGENTS_NAMESPACE}" get agents
  if [[ "${settled}" == true ]]; then
    break
  fi
  (( SECONDS - waited < TIMEOUT )) || die "the samples did not reach their phases within ${TIMEOUT}s"
  sleep 5
done
k -n "${AGENTS_NAMESPACE}" get agents \
  -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,RUNTIME:.status.runtimeClassName,REASON:.status.reason,RESULT:.status.result'
log "e2e on kind with gVisor passed in $((SECONDS - start))s"
