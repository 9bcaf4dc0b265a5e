#!/usr/bin/env bash
# Start a real node beside the local control plane (idempotent): containerd with gVisor's
# runsc shim, and a kubelet that registers $NODE_NAME (stockade-node-0).
#
#   - the control plane: hack/cluster-up.sh (reused when it is up);
#   - binaries: hack/node-binaries.sh (built once into the project's cache);
#   - containerd: root $NODE_ROOT/containerd, state and socket under $NODE_RUN; runtime
#     `runsc` (handler of the RuntimeClass gvisor) through containerd-shim-runsc-v1 with
#     platform systrap (the KVM platform panics on this machine's nested /dev/kvm) and
#     oci-seccomp (else gVisor ignores the pods' seccomp RuntimeDefault);
#   - network: bridge $NODE_BRIDGE with $NODE_SUBNET (CNI bridge + host-local + loopback
#     from Debian), no masquerade, no kube-proxy: pods reach the node's bridge address,
#     not the API server (which listens on 127.0.0.1) nor Services;
#   - kubelet: the admin kubeconfig, cgroup v1 with the cgroupfs driver under the cgroup
#     $NODE_CGROUP, label stockade.dev/real-node=true and the taint
#     stockade.dev/real-node=true:NoSchedule (only pods that tolerate it run here), plus
#     the label sandbox.stockade.dev/gvisor=true that the RuntimeClass gvisor selects;
#   - NetworkPolicy: kube-router's network-policy controller alone (no routing, no
#     service proxy; built by hack/node-binaries.sh), a host process with the admin
#     kubeconfig, enforcing the policies of the node's pods with iptables and ipsets
#     (test-only: the chart never ships it);
#   - images: a pause image (hack/node/pause), the e2e agent and the example agent,
#     built by hack/node-binaries.sh as docker archives in the cache, imported with ctr.
# It builds nothing itself when STOCKADE_NO_BUILD=1 (the tests): what is missing is named.
# Before changing anything it saves the sysctls in NODE_SYSCTLS; hack/node-down.sh undoes
# it all. Needs root. Prints how long it took.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start=${SECONDS}
[[ ${EUID} -eq 0 ]] || die "the real node needs root (kubelet, containerd, runsc)"
[[ -d /sys/fs/cgroup/memory ]] || die "expected cgroup v1 hierarchies under /sys/fs/cgroup"

bash "${HACK_DIR}/cluster-up.sh"
# Builds nothing when called from the tests (STOCKADE_NO_BUILD=1): `make e2e` and
# `make node-up` build first; here it only checks and names what is missing.
bash "${HACK_DIR}/node-binaries.sh"
kubectl="$(find_bin kubectl)"
k() { "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" "$@"; }
export PATH="${GVISOR_CACHE_BIN}:${CONTAINERD_CACHE_BIN}:${PATH}"
socket="${NODE_RUN}/containerd/containerd.sock"
ctr() { "${CONTAINERD_CACHE_BIN}/ctr" --address "${socket}" -n k8s.io "$@"; }

mkdir -p "${NODE_ROOT}"/{containerd,kubelet,cni/net.d,images,log} "${NODE_RUN}"/{containerd,runsc}

alive() {  # alive NAME: the process whose PID is in $NODE_RUN/NAME.pid is running
  local pid
  pid="$(cat "${NODE_RUN}/$1.pid" 2>/dev/null)" && [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null
}

# --- sysctls: saved once (the first node-up), restored by node-down -------------------
if [[ ! -s "${NODE_RUN}/sysctls.saved" ]]; then
  for key in "${NODE_SYSCTLS[@]}"; do
    printf '%s=%s\n' "${key}" "$(sysctl -n "${key}")"
  done >"${NODE_RUN}/sysctls.saved.tmp"
  mv "${NODE_RUN}/sysctls.saved.tmp" "${NODE_RUN}/sysctls.saved"
  iptables-save >"${NODE_RUN}/iptables.saved" 2>/dev/null || true
  ip6tables-save >"${NODE_RUN}/ip6tables.saved" 2>/dev/null || true
  nft list tables >"${NODE_RUN}/nft-tables.saved" 2>/dev/null || true
  ipset list -n >"${NODE_RUN}/ipsets.saved" 2>/dev/null || true
  for path in "${NODE_HOST_PATHS[@]}"; do
    [[ -e "${path}" ]] || echo "${path}"
  done >"${NODE_RUN}/paths.created"
fi

# --- cgroups: the kubelet's cgroupRoot must exist in every hierarchy -----------------
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d "${hierarchy}${NODE_CGROUP}" ]] && continue
  mkdir "${hierarchy}${NODE_CGROUP}"
  echo "${hierarchy}${NODE_CGROUP}" >>"${NODE_RUN}/cgroups.created"
done
# cpuset: a new v1 cgroup starts with no cpus/mems; inherit the parent's.
cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/${NODE_CGROUP}/cpuset.cpus"
cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/${NODE_CGROUP}/cpuset.mems"

# --- network: the bridge (the CNI bridge plugin would create it, but the kubelet needs
# the node IP before the first pod) and the CNI config --------------------------------
if ! ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
  ip link add "${NODE_BRIDGE}" type bridge
  touch "${NODE_RUN}/bridge.created"
fi
ip addr replace "${NODE_IP}/${NODE_SUBNET#*/}" dev "${NODE_BRIDGE}"
ip link set "${NODE_BRIDGE}" up
cat >"${NODE_ROOT}/cni/net.d/10-stockade.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "stockade",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${NODE_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${NODE_RUN}/cni-ipam",
        "ranges": [[{"subnet": "${NODE_SUBNET}", "gateway": "${NODE_IP}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF

# --- containerd -------------------------------------------------------------------
cat >"${NODE_ROOT}/runsc.toml" <<EOF
# containerd-shim-runsc-v1 options (ConfigPath of the runsc runtime in containerd.toml).
binary_name = "${GVISOR_CACHE_BIN}/runsc"
root = "${NODE_RUN}/runsc"
[runsc_config]
  # /dev/kvm is nested (PVM) here and runsc's KVM platform panics on it.
  platform = "systrap"
  # Without it gVisor ignores the pod's seccomp profile (Stockade sets RuntimeDefault).
  oci-seccomp = "true"
  debug-log = "${NODE_ROOT}/log/runsc/"
EOF
cat >"${NODE_ROOT}/containerd.toml" <<EOF
version = 4
root = "${NODE_ROOT}/containerd"
state = "${NODE_RUN}/containerd"
imports = []
# Nothing of containerd's outside the node's directories: no NRI socket in /var/run/nri,
# no /opt/containerd, no /run/containerd socket (the defaults).
disabled_plugins = ["io.containerd.nri.v1.nri"]
[plugins."io.containerd.server.v1.grpc"]
  address = "${socket}"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "${socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${NODE_ROOT}/opt"
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "${NODE_ROOT}/image-verifier"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # The kubelet asks for oom_score_adj values this VM does not allow (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "${NODE_ROOT}/runsc.toml"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${NODE_ROOT}/cni/net.d"
[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${NODE_PAUSE_IMAGE}"
EOF
if ! alive containerd; then
  log "starting containerd (log ${NODE_ROOT}/log/containerd.log)"
  setsid "${CONTAINERD_CACHE_BIN}/containerd" --config "${NODE_ROOT}/containerd.toml" \
    >>"${NODE_ROOT}/log/containerd.log" 2>&1 </dev/null &
  echo $! >"${NODE_RUN}/containerd.pid"
fi
for _ in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
ctr version >/dev/null || die "containerd did not start: $(tail -n 20 "${NODE_ROOT}/log/containerd.log")"

# --- images: built by hack/node-binaries.sh, imported here ---------------------------
images="$(node_images_dir)"
[[ -e "${images}/complete" ]] ||
  die "the node's images are missing (${images}): run \`make node-binaries\` first"
for name in pause agent example-agent; do
  ref="$(case "${name}" in pause) echo "${NODE_PAUSE_IMAGE}" ;; agent) echo "${NODE_AGENT_IMAGE}" ;;
    *) echo "${NODE_EXAMPLE_AGENT_IMAGE}" ;; esac)"
  # Imported when absent or built from other sources than what containerd holds.
  if [[ "$(cat "${NODE_ROOT}/images/${name}.stamp" 2>/dev/null)" != "${images}" ]] ||
    ! ctr images ls -q | grep -qx "${ref}"; then
    log "importing ${ref}"
    ctr images import "${images}/${name}.tar" >/dev/null
    echo "${images}" >"${NODE_ROOT}/images/${name}.stamp"
  fi
done

# --- kubelet --------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
if ! alive kubelet; then
  cat >"${NODE_ROOT}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This VM has cgroup v1 (kubelet 1.35+ refuses it unless told) and no swap accounting.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /${NODE_CGROUP}
failSwapOn: false
containerRuntimeEndpoint: unix://${socket}
address: ${NODE_IP}
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
# Pods on the bridge can reach this port: no anonymous access. (The API server has no
# kubelet client certificate in this cluster, so kubectl logs/exec here are refused.)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${KWOK_WORKDIR}/clusters/${STOCKADE_CLUSTER_NAME}/pki/ca.crt}
authorization:
  mode: Webhook
registerWithTaints:
- {key: ${NODE_TAINT_KEY}, value: "true", effect: NoSchedule}
maxPods: 30
# A shared development VM: never evict for its disk or memory, never GC our images.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
EOF
  log "starting the kubelet as ${NODE_NAME} (log ${NODE_ROOT}/log/kubelet.log)"
  setsid "${K8S_CACHE_BIN}/kubelet" --config "${NODE_ROOT}/kubelet.yaml" \
    --kubeconfig "${STOCKADE_KUBECONFIG}" --root-dir "${NODE_ROOT}/kubelet" \
    --cert-dir "${NODE_ROOT}/kubelet/pki" --hostname-override "${NODE_NAME}" \
    --node-ip "${NODE_IP}" \
    --node-labels "${NODE_TAINT_KEY}=true,sandbox.stockade.dev/gvisor=true" \
    --v=2 >>"${NODE_ROOT}/log/kubelet.log" 2>&1 </dev/null &
  echo $! >"${NODE_RUN}/kubelet.pid"
fi
for _ in $(seq 60); do k get node "${NODE_NAME}" >/dev/null 2>&1 && break; sleep 1; done
if ! k wait --for=condition=Ready "node/${NODE_NAME}" --timeout=120s >/dev/null 2>&1; then
  die "node ${NODE_NAME} is not Ready: $(tail -n 30 "${NODE_ROOT}/log/kubelet.log")"
fi
# --- NetworkPolicy: kube-router's network-policy controller ---------------------------
# After the kubelet: it finds the node's pods by the Node's InternalIP. Its rules hook
# INPUT, FORWARD and OUTPUT (pod to node, pod to pod, node to pod); a pod that no
# NetworkPolicy selects keeps full access. Traffic to the Service range and to local node
# ports (30000-32767) always passes. Health and metrics ports off: nothing else listens.
if ! alive kube-router; then
  log "starting kube-router's network-policy controller (log ${NODE_ROOT}/log/kube-router.log)"
  # kwok's API server assigns Service IPs from 10.0.0.0/24 (no flag sets it here).
  setsid "${KUBE_ROUTER_CACHE_BIN}/kube-router" --run-firewall=true --run-router=false \
    --run-service-proxy=false --kubeconfig "${STOCKADE_KUBECONFIG}" \
    --hostname-override "${NODE_NAME}" --health-port 0 --metrics-port 0 \
    --service-cluster-ip-range 10.0.0.0/24 --v=1 \
    >>"${NODE_ROOT}/log/kube-router.log" 2>&1 </dev/null &
  echo $! >"${NODE_RUN}/kube-router.pid"
fi
for _ in $(seq 60); do
  iptables -t filter -S INPUT 2>/dev/null | grep -q -- '-j KUBE-ROUTER-INPUT' && break
  alive kube-router || break
  sleep 0.5
done
iptables -t filter -S INPUT 2>/dev/null | grep -q -- '-j KUBE-ROUTER-INPUT' ||
  die "kube-router did not set up its chains: $(tail -n 20 "${NODE_ROOT}/log/kube-router.log")"

# --- storage: workspaces on the real node (the cluster's `standard` PVs are kwok's) ------
# A StorageClass of its own and a few local PVs under $NODE_ROOT/pv, bound to the node;
# Agents ask for it with spec.workspace.storageClassName: stockade-node.
{
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: stockade-node, labels: {${NODE_TAINT_KEY}: "true"}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
  for i in 0 1 2 3 4 5 6 7; do
    dir="${NODE_ROOT}/pv/${i}"
    mkdir -p "${dir}"
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: stockade-node-pv-${i}, labels: {${NODE_TAINT_KEY}: "true"}}
spec:
  storageClassName: stockade-node
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  local: {path: ${dir}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [${NODE_NAME}]}
EOF
  done
} | k apply -f - >/dev/null
# A Released PV is handed out again, emptied and owned by the agents' uid (65532).
for pv in $(k get pv -l "${NODE_TAINT_KEY}=true" \
  -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{" "}{end}'); do
  rm -rf "${NODE_ROOT:?}/pv/${pv##*-}" && mkdir -p "${NODE_ROOT}/pv/${pv##*-}"
  k patch pv "${pv}" --type merge -p '{"spec":{"claimRef":null}}' >/dev/null
done
chown 65532:65532 "${NODE_ROOT}"/pv/*
log "node ${NODE_NAME} ready in $((SECONDS - start))s (RuntimeClass gvisor -> runsc)"
