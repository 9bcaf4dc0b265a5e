#!/usr/bin/env bash
# Start the local control plane, or reuse it when it is already up (idempotent).
#
# kube-apiserver (RBAC, default admission plugins incl. PodSecurity/ResourceQuota/
# RuntimeClass), etcd, kube-controller-manager, kube-scheduler and kwok's controller run
# as local processes (kwokctl's binary runtime), listening on loopback ports picked free.
# Then fake nodes and the gvisor/kata RuntimeClasses are applied. The kubeconfig is
# written to $STOCKADE_KUBECONFIG (default .cache/cluster/kubeconfig in the checkout).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start=${SECONDS}

bash "${HACK_DIR}/k8s-binaries.sh"
export KWOK_WORKDIR
kwokctl="$(find_bin kwokctl)"
kubectl="$(find_bin kubectl)"
k() { "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" "$@"; }
healthy() { [[ -s "${STOCKADE_KUBECONFIG}" ]] && k get --raw /readyz >/dev/null 2>&1; }

free_port() {  # a free loopback TCP port chosen by the kernel (random, so runs don't collide)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

create_cluster() {
  local config="${KWOK_WORKDIR}/kwokctl-${STOCKADE_CLUSTER_NAME}.yaml" name
  mkdir -p "${KWOK_WORKDIR}" "$(dirname "${STOCKADE_KUBECONFIG}")"
  {
    cat "${HACK_DIR}/kwok/kwokctl.yaml"
    echo "  kubeVersion: v${K8S_VERSION}"
    echo "  etcdVersion: ${ETCD_VERSION}"
    echo "  kwokVersion: v${KWOK_VERSION}"
    echo "  kubeApiserverBinary: $(find_bin kube-apiserver)"
    echo "  kubeControllerManagerBinary: $(find_bin kube-controller-manager)"
    echo "  kubeSchedulerBinary: $(find_bin kube-scheduler)"
    echo "  kubectlBinary: ${kubectl}"
    echo "  etcdBinary: $(find_bin etcd)"
    echo "  kwokControllerBinary: $(find_bin kwok)"
    for name in kubeApiserverPort etcdPort etcdPeerPort kubeControllerManagerPort \
      kubeSchedulerPort kwokControllerPort; do
      echo "  ${name}: $(free_port)"
    done
  } >"${config}"
  rm -f "${STOCKADE_KUBECONFIG}"
  log "creating cluster ${STOCKADE_CLUSTER_NAME} (Kubernetes v${K8S_VERSION}, workdir ${KWOK_WORKDIR})"
  "${kwokctl}" create cluster --name "${STOCKADE_CLUSTER_NAME}" \
    --config "${config}" --config "${HACK_DIR}/kwok/stages.yaml" \
    --kubeconfig "${STOCKADE_KUBECONFIG}" --wait 120s
}

if healthy; then
  log "cluster ${STOCKADE_CLUSTER_NAME} is already running"
else
  if "${kwokctl}" get clusters 2>/dev/null | grep -qx "${STOCKADE_CLUSTER_NAME}"; then
    log "cluster ${STOCKADE_CLUSTER_NAME} exists but is not serving; starting it"
    "${kwokctl}" start cluster --name "${STOCKADE_CLUSTER_NAME}" --wait 120s || true
    if ! healthy; then
      log "restart failed; recreating cluster ${STOCKADE_CLUSTER_NAME}"
      "${kwokctl}" delete cluster --name "${STOCKADE_CLUSTER_NAME}" || true
    fi
  fi
  healthy || create_cluster
fi

k apply -f "${HACK_DIR}/cluster/nodes.yaml" -f "${HACK_DIR}/cluster/runtimeclasses.yaml" \
  -f "${HACK_DIR}/cluster/storage.yaml" >/dev/null
k wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null
# The local PVs are never written (nothing is mounted), so a Released one can be handed
# out again: clear its claim so the pool does not run dry on a long-lived cluster.
for pv in $(k get pv -l type=kwok -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{" "}{end}'); do
  k patch pv "${pv}" --type merge -p '{"spec":{"claimRef":null}}' >/dev/null
done
log "cluster ${STOCKADE_CLUSTER_NAME} ready in $((SECONDS - start))s: $(k get nodes -l type=kwok --no-headers | wc -l) fake nodes"
log "export KUBECONFIG=${STOCKADE_KUBECONFIG}"
