# Shared helpers for hack/*.sh. Source it; it defines variables and functions only.
# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are for the scripts that source this file

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${HACK_DIR}/.." && pwd)"
# shellcheck source=hack/versions.env
source "${HACK_DIR}/versions.env"

# Binaries of the local control plane, in the order they are resolved and built.
# shellcheck disable=SC2034  # used by the scripts that source this file
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm)

# The project's cache, shared by every checkout of the repository on this machine
# (a fresh clone in CI reuses what an earlier run built). STOCKADE_CACHE_DIR overrides it.
STOCKADE_CACHE_DIR="${STOCKADE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/stockade}"
K8S_CACHE_BIN="${STOCKADE_CACHE_DIR}/k8s/v${K8S_VERSION}/bin"
# The real node's binaries (hack/node-binaries.sh): the kubelet sits beside the control
# plane in K8S_CACHE_BIN; containerd and gVisor have their own versioned directories.
# shellcheck disable=SC2034  # used by the scripts that source this file
CONTAINERD_CACHE_BIN="${STOCKADE_CACHE_DIR}/containerd/v${CONTAINERD_VERSION}/bin"
# shellcheck disable=SC2034
GVISOR_CACHE_BIN="${STOCKADE_CACHE_DIR}/gvisor/${GVISOR_GO_VERSION}/bin"
# shellcheck disable=SC2034
KUBE_ROUTER_CACHE_BIN="${STOCKADE_CACHE_DIR}/kube-router/v${KUBE_ROUTER_VERSION}/bin"

# Where the local cluster keeps its state and its kubeconfig (fixed path per checkout).
STOCKADE_CLUSTER_NAME="${STOCKADE_CLUSTER_NAME:-stockade}"
STOCKADE_KUBECONFIG="${STOCKADE_KUBECONFIG:-${REPO_ROOT}/.cache/cluster/kubeconfig}"
KWOK_WORKDIR="${KWOK_WORKDIR:-${REPO_ROOT}/.cache/kwok}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# stop_pid_file NAME FILE: stop the process whose PID FILE holds (if it still runs):
# SIGTERM, up to 20 s to exit, then SIGKILL; FILE is removed. What a script started, it
# stops by its PID, never by name.
stop_pid_file() {
  local name="$1" file="$2" pid
  pid="$(cat "${file}" 2>/dev/null)" || return 0
  if [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}"
    for _ in $(seq 40); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "${pid}" 2>/dev/null; then kill -KILL "${pid}"; fi
  fi
  rm -f "${file}"
}

# refuse_build WHAT TARGET: with STOCKADE_NO_BUILD=1 (set for every test run, see
# tests/conftest.py) a build script that finds WHAT missing stops with a message naming
# the make target that builds it, instead of building under a test's timeout.
refuse_build() {
  [[ "${STOCKADE_NO_BUILD:-}" == 1 ]] || return 0
  die "$1 is missing from the cache (${STOCKADE_CACHE_DIR}); tests do not build (STOCKADE_NO_BUILD=1): run \`make $2\` first"
}

# resolve_bin NAME: print the path of binary NAME, looked up in this order:
#   1. $STOCKADE_K8S_BIN (the project's variable), 2. $KUBEBUILDER_ASSETS (the envtest
#   convention), 3. the project's cache. Returns 1 when none has it.
resolve_bin() {
  local name="$1" dir
  for dir in "${STOCKADE_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}" "${K8S_CACHE_BIN}"; do
    if [[ -n "${dir}" && -x "${dir}/${name}" ]]; then
      printf '%s\n' "${dir}/${name}"
      return 0
    fi
  done
  return 1
}

# kubectl_on_path_in_skew: print the kubectl on PATH when its minor version is within
# kubectl's supported skew (+/-1 minor) of K8S_VERSION; return 1 otherwise.
kubectl_on_path_in_skew() {
  local path minor want
  path="$(command -v kubectl 2>/dev/null)" || return 1
  minor="$("${path}" version --client -o json 2>/dev/null |
    sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1)"
  want="$(cut -d. -f2 <<<"${K8S_VERSION}")"
  [[ -n "${minor}" ]] && (( minor >= want - 1 && minor <= want + 1 )) || return 1
  printf '%s\n' "${path}"
}

# find_bin NAME: resolve_bin, then (for kubectl only) a kubectl on PATH within skew.
find_bin() {
  resolve_bin "$1" && return 0
  [[ "$1" == kubectl ]] && kubectl_on_path_in_skew && return 0
  return 1
}

# The real node (hack/node-up.sh, hack/node-down.sh): one per machine, since it owns a
# bridge, cgroups and sysctls; its state lives outside the checkout.
NODE_NAME="${STOCKADE_NODE_NAME:-stockade-node-0}"
NODE_ROOT="${STOCKADE_NODE_ROOT:-/var/lib/stockade-node}"  # containerd, kubelet, images
NODE_RUN="${STOCKADE_NODE_RUN:-/run/stockade-node}"        # sockets, PIDs, saved sysctls
NODE_BRIDGE=stockade0
NODE_SUBNET=10.88.77.0/24
NODE_IP=10.88.77.1
NODE_CGROUP=stockade-node  # cgroupRoot of the kubelet, under every v1 hierarchy
NODE_TAINT_KEY=stockade.dev/real-node
# Sysctls the kubelet (vm.*, kernel.*) and the CNI bridge plugin (ip_forward) change;
# node-up saves them once, node-down restores them.
NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.forwarding)
# Host paths the node's components create whatever their configuration says: the
# kubelet's device-plugin socket, the shims' sockets (/run/containerd/s), libcni's cache,
# libmount's utab. node-down removes those that node-up found absent.
NODE_HOST_PATHS=(/var/lib/kubelet /run/containerd /var/lib/cni /run/mount)
# The images node-up builds and imports (pods use imagePullPolicy IfNotPresent/Never).
NODE_PAUSE_IMAGE=localhost/stockade/pause:1
NODE_AGENT_IMAGE=localhost/stockade/e2e-agent:1
NODE_EXAMPLE_AGENT_IMAGE=localhost/stockade/example-agent:1  # examples/agent on busybox
# node_images_dir: where hack/node-binaries.sh leaves the node's images (docker archives
# pause.tar, agent.tar, example-agent.tar) for node-up to import; keyed by a hash of what
# they are built from, so an edit of the agent scripts builds them again.
node_images_dir() {
  local stamp
  stamp="$(cat "${HACK_DIR}/node-binaries.sh" "${HACK_DIR}/node/agent/agent.sh" \
    "${HACK_DIR}/node/pause/main.go" "${REPO_ROOT}/examples/agent/agent.sh" | sha256sum | cut -c1-16)"
  printf '%s\n' "${STOCKADE_CACHE_DIR}/node-images/${stamp}"
}
