#!/usr/bin/env bash
# Stop the real node hack/node-up.sh started and undo what it changed (idempotent):
# the Node object, kube-router (the NetworkPolicy enforcer), the kubelet and containerd
# (by the PIDs node-up recorded; the pods' runsc sandboxes and shims too), the mounts
# under its directories, the bridge, the iptables chains and ipsets, the cgroups it
# created, and the sysctls it saved. The control plane is left alone
# (hack/cluster-down.sh stops it). Images and containerd's content stay in $NODE_ROOT
# unless STOCKADE_NODE_PURGE=1.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ ${EUID} -eq 0 ]] || die "the real node needs root"
start=${SECONDS}

# stop NAME: SIGTERM the process in $NODE_RUN/NAME.pid, SIGKILL after 20 s.
stop() { stop_pid_file "$1" "${NODE_RUN}/$1.pid"; }

# Remove the node's pods first, so the kubelet and containerd stop their sandboxes
# (runsc, shims, network namespaces) cleanly while they still run.
kubectl="$(find_bin kubectl 2>/dev/null)" || kubectl=""
if [[ -n "${kubectl}" && -s "${STOCKADE_KUBECONFIG}" ]] &&
  "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" get node "${NODE_NAME}" >/dev/null 2>&1; then
  k() { "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" "$@"; }
  k cordon "${NODE_NAME}" >/dev/null 2>&1 || true
  k delete pods -A --field-selector "spec.nodeName=${NODE_NAME}" --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    [[ -z "$(k get pods -A --field-selector "spec.nodeName=${NODE_NAME}" -o name 2>/dev/null)" ]] && break
    sleep 1
  done
fi
# The enforcer first: stopped, it changes no rule while they are removed below.
stop kube-router
socket="${NODE_RUN}/containerd/containerd.sock"
crictl_like() { "${CONTAINERD_CACHE_BIN}/ctr" --address "${socket}" -n k8s.io "$@"; }
stop kubelet
if [[ -S "${socket}" ]] && [[ -x "${CONTAINERD_CACHE_BIN}/ctr" ]]; then
  # Whatever the kubelet left: kill the tasks (runsc sandboxes), remove the containers.
  for id in $(crictl_like tasks ls -q 2>/dev/null); do crictl_like tasks kill -s KILL "${id}" >/dev/null 2>&1 || true; done
  sleep 1
  for id in $(crictl_like tasks ls -q 2>/dev/null); do crictl_like tasks delete -f "${id}" >/dev/null 2>&1 || true; done
  for id in $(crictl_like containers ls -q 2>/dev/null); do crictl_like containers delete "${id}" >/dev/null 2>&1 || true; done
fi
stop containerd
if [[ -n "${kubectl}" && -s "${STOCKADE_KUBECONFIG}" ]]; then
  # The Node, and the StorageClass and local PVs node-up made for it.
  "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" delete node "${NODE_NAME}" --ignore-not-found \
    --wait=false >/dev/null 2>&1 || true
  "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" delete pv,storageclass \
    -l "${NODE_TAINT_KEY}=true" --wait=false >/dev/null 2>&1 || true
fi

# Shims and sandboxes are started by containerd in their own session; whatever survives
# it (a shim whose containerd died) is found by its command line naming our state dir.
for pid in $(pgrep -f -- "${NODE_RUN}/" 2>/dev/null || true); do
  [[ "${pid}" != "$$" ]] || continue
  log "killing leftover process ${pid}: $(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | cut -c1-120)"
  kill -KILL "${pid}" 2>/dev/null || true
done

# Mounts under the node's directories (pod volumes, rootfs, netns, shm), deepest first.
for dir in "${NODE_ROOT}" "${NODE_RUN}"; do
  { findmnt -rn -o TARGET | grep -E "^${dir}(/|$)" || true; } | sort -r | while read -r target; do
    umount "${target}" 2>/dev/null || umount -l "${target}" 2>/dev/null || true
  done
done

if [[ -e "${NODE_RUN}/bridge.created" ]] || ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
  ip link delete "${NODE_BRIDGE}" 2>/dev/null || true
  log "bridge ${NODE_BRIDGE} removed"
fi
# iptables: the kubelet adds KUBE-* chains (KUBE-FIREWALL drops martian packets to
# 127.0.0.0/8; canaries), kube-router its KUBE-ROUTER-*, KUBE-NWPLCY-* and KUBE-POD-FW-*
# ones (jumped to from INPUT, FORWARD and OUTPUT), CNI would add CNI-* ones (none
# expected: no masquerade). Remove those that were not there before node-up.
clean_chains() {  # clean_chains CMD: for iptables or ip6tables
  local cmd="$1" saved="${NODE_RUN}/$1.saved" table chain rule chains
  command -v "${cmd}-save" >/dev/null && [[ -e "${saved}" ]] || return 0
  for table in mangle nat filter; do
    chains=()
    for chain in $("${cmd}-save" -t "${table}" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\).*/\1/p'); do
      grep -q "^:${chain} " "${saved}" || chains+=("${chain}")
    done
    for chain in "${chains[@]}"; do
      log "removing ${cmd} chain ${table}/${chain}"
      { "${cmd}" -t "${table}" -S 2>/dev/null | grep -E -- "-j ${chain}( |$)" || true; } |
        sed 's/^-A/-D/' | while read -r rule; do
          # xargs splits as iptables -S quotes (kube-router's jumps carry a --comment "...").
          printf '%s\n' "${rule}" | xargs "${cmd}" -t "${table}" 2>/dev/null || true
        done
      "${cmd}" -t "${table}" -F "${chain}" 2>/dev/null || true
    done
    for chain in "${chains[@]}"; do "${cmd}" -t "${table}" -X "${chain}" 2>/dev/null || true; done
  done
}
clean_chains iptables
clean_chains ip6tables
# kube-router's ipsets (KUBE-SRC-*, KUBE-DST-*, ...; inet6: for IPv6), once no rule
# references them: those node-up did not find.
if [[ -e "${NODE_RUN}/ipsets.saved" ]] && command -v ipset >/dev/null; then
  for set in $(ipset list -n 2>/dev/null); do
    [[ "${set}" == KUBE-* || "${set}" == inet6:KUBE-* ]] || continue
    grep -qxF -- "${set}" "${NODE_RUN}/ipsets.saved" && continue
    ipset destroy "${set}" 2>/dev/null && log "removed ipset ${set}"
  done
fi
# iptables-nft leaves the (now empty) tables it registered for them: drop those too.
if [[ -e "${NODE_RUN}/nft-tables.saved" ]] && command -v nft >/dev/null; then
  nft list tables 2>/dev/null | while read -r _ family name; do
    grep -qx "table ${family} ${name}" "${NODE_RUN}/nft-tables.saved" && continue
    if nft delete table "${family}" "${name}" 2>/dev/null; then
      log "removed nftables table ${family} ${name}"
    fi
  done
fi

# Host paths the kubelet, containerd's shims and CNI use whatever they are told (the
# device-plugin socket, shim sockets, libcni's cache, libmount's utab), removed when
# node-up found them absent.
if [[ -s "${NODE_RUN}/paths.created" ]]; then
  while read -r path; do
    if [[ -e "${path}" ]]; then rm -rf "${path}" && log "removed ${path}"; fi
  done <"${NODE_RUN}/paths.created"
fi

# cgroups: the kubelet's (kubepods/...) and runsc's below ours, deepest first.
if [[ -s "${NODE_RUN}/cgroups.created" ]]; then
  while read -r cgroup; do
    [[ -d "${cgroup}" ]] || continue
    find "${cgroup}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    if [[ -d "${cgroup}" ]]; then log "warning: cgroup ${cgroup} is still there (processes in it?)"; fi
  done <"${NODE_RUN}/cgroups.created"
  rm -f "${NODE_RUN}/cgroups.created"
fi

if [[ -s "${NODE_RUN}/sysctls.saved" ]]; then
  while IFS='=' read -r key value; do
    [[ "$(sysctl -n "${key}")" == "${value}" ]] && continue
    if sysctl -q -w "${key}=${value}" >/dev/null; then log "restored ${key}=${value}"; fi
  done <"${NODE_RUN}/sysctls.saved"
fi
if findmnt -rn -o TARGET | grep -qE "^(${NODE_ROOT}|${NODE_RUN})(/|$)"; then
  die "mounts remain under ${NODE_ROOT} or ${NODE_RUN}; not deleting them: $(findmnt -rn -o TARGET | grep -E "^(${NODE_ROOT}|${NODE_RUN})")"
fi
rm -rf "${NODE_RUN:?}"
if [[ "${STOCKADE_NODE_PURGE:-0}" == 1 ]]; then
  rm -rf "${NODE_ROOT}"
else
  # Keep containerd's content (the imported images) and the logs; drop pod state.
  rm -rf "${NODE_ROOT:?}/kubelet" "${NODE_ROOT}/cni" "${NODE_ROOT}/pv"
fi
log "node ${NODE_NAME} down in $((SECONDS - start))s"
