#!/usr/bin/env bash
# Find or build the real node's binaries (`make node-up`), once, into the project's cache:
#   - kubelet, by hack/k8s-binaries.sh (same wrapper module as the control plane) into
#     $STOCKADE_CACHE_DIR/k8s/v<K8S_VERSION>/bin;
#   - containerd, containerd-shim-runc-v2 and ctr from github.com/containerd/containerd/v2
#     (go install, CGO off, no btrfs/devmapper/zfs snapshotters) into
#     $STOCKADE_CACHE_DIR/containerd/v<CONTAINERD_VERSION>/bin;
#   - runsc and containerd-shim-runsc-v1 from gvisor.dev/gvisor (its `go` branch, pinned as
#     a pseudo-version) into $STOCKADE_CACHE_DIR/gvisor/<GVISOR_GO_VERSION>/bin, built from
#     a copy of the module with hack/node/patches/*.patch applied (see the patch: the shim
#     must not fail where lowering its OOM score is not permitted).
#   - kube-router (github.com/cloudnativelabs/kube-router/v2, CGO off) into
#     $STOCKADE_CACHE_DIR/kube-router/v<KUBE_ROUTER_VERSION>/bin: only its network-policy
#     controller runs (hack/node-up.sh), the node's NetworkPolicy enforcer for the tests;
#   - the node's images (a pause image, the e2e agent and the example agent: busybox-static
#     with hack/node/agent/agent.sh or examples/agent/agent.sh, packed with umoci and
#     skopeo) as docker archives into $(node_images_dir) (hack/lib.sh), which
#     hack/node-up.sh imports into containerd.
# Also installs, idempotently, the Debian packages the node needs (CNI plugins, iptables,
# busybox-static, umoci, skopeo, ...). With a warm cache it builds nothing. Prints build times.
# `make e2e` runs it as its own step before the tests; node-up only checks its results.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian packages: CNI plugins (bridge, host-local, loopback), iptables (the bridge
# plugin's masquerade rules), the agent image's busybox, and umoci + skopeo to pack images.
# nftables: node-down drops the nf_tables tables the kubelet's iptables calls registered;
# iproute2 (ip: the bridge) and procps (pgrep: node-down's leftovers), usually present.
NODE_DEBIAN_PACKAGES=(containernetworking-plugins iptables ipset nftables iproute2 procps busybox-static umoci skopeo patch)

ensure_debian_packages() {
  local missing=() pkg
  for pkg in "${NODE_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("${pkg}")
  done
  ((${#missing[@]})) || return 0
  refuse_build "Debian packages ${missing[*]}" node-binaries
  log "installing Debian packages: ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get is needed to install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

timed() {  # timed LABEL CMD...: run CMD, log how long it took
  local label="$1" start=${SECONDS}; shift
  log "building ${label}"
  "$@"
  log "built ${label} in $((SECONDS - start))s"
}

build_containerd() {
  refuse_build "containerd v${CONTAINERD_VERSION}" node-binaries
  need_go
  local name pkg="github.com/containerd/containerd/v2"
  for name in containerd containerd-shim-runc-v2 ctr; do
    timed "containerd v${CONTAINERD_VERSION}: ${name}" \
      env GOBIN="${CONTAINERD_CACHE_BIN}" go install -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X ${pkg}/version.Version=v${CONTAINERD_VERSION}" \
      "${pkg}/cmd/${name}@v${CONTAINERD_VERSION}"
  done
}

build_gvisor() {
  refuse_build "gVisor ${GVISOR_GO_VERSION} (runsc)" node-binaries
  need_go
  local src="${STOCKADE_CACHE_DIR}/gvisor/${GVISOR_GO_VERSION}/src" dir patch
  dir="$(go mod download -json "gvisor.dev/gvisor@${GVISOR_GO_VERSION}" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -d "${dir}" ]] || die "go mod download gvisor.dev/gvisor@${GVISOR_GO_VERSION} failed"
  rm -rf "${src}"
  mkdir -p "${src}"
  cp -r "${dir}/." "${src}/"
  chmod -R u+w "${src}"
  for patch in "${HACK_DIR}"/node/patches/gvisor-*.patch; do
    log "applying $(basename "${patch}")"
    patch -d "${src}" -p1 --quiet <"${patch}"
  done
  (cd "${src}" &&
    timed "gVisor ${GVISOR_GO_VERSION}: runsc" go build -mod=mod \
      -ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=${GVISOR_GO_VERSION}" \
      -o "${GVISOR_CACHE_BIN}/runsc" ./runsc &&
    timed "gVisor ${GVISOR_GO_VERSION}: containerd-shim-runsc-v1" go build -mod=mod \
      -ldflags "-s -w" -o "${GVISOR_CACHE_BIN}/containerd-shim-runsc-v1" ./shim)
  rm -rf "${src}"
}

build_kube_router() {
  refuse_build "kube-router v${KUBE_ROUTER_VERSION}" node-binaries
  need_go
  local pkg="github.com/cloudnativelabs/kube-router/v2"
  timed "kube-router v${KUBE_ROUTER_VERSION}" \
    env GOBIN="${KUBE_ROUTER_CACHE_BIN}" go install \
    -ldflags "-s -w -X ${pkg}/pkg/version.Version=v${KUBE_ROUTER_VERSION}" \
    "${pkg}/cmd/kube-router@v${KUBE_ROUTER_VERSION}"
}

# image DIR NAME REF ENTRYPOINT USER ROOTFS_SETUP: an OCI image built with umoci from a
# rootfs that ROOTFS_SETUP (a function, given the rootfs path) fills, written as the
# docker archive DIR/NAME.tar of REF.
image() {
  local out="$1" name="$2" ref="$3" entrypoint="$4" user="$5" setup="$6"
  local dir="${out}/${name}.work"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  umoci init --layout "${dir}/oci"
  umoci new --image "${dir}/oci:${name}"
  umoci unpack --image "${dir}/oci:${name}" "${dir}/bundle" >/dev/null
  "${setup}" "${dir}/bundle/rootfs"
  umoci repack --image "${dir}/oci:${name}" "${dir}/bundle"
  umoci config --image "${dir}/oci:${name}" --config.entrypoint "${entrypoint}" \
    --config.user "${user}" --config.workingdir / \
    --config.env PATH=/bin:/usr/bin:/sbin:/usr/sbin
  rm -f "${out}/${name}.tar"
  skopeo copy --quiet "oci:${dir}/oci:${name}" "docker-archive:${out}/${name}.tar:${ref}"
  rm -rf "${dir}"
}
pause_rootfs() {
  go build -ldflags "-s -w" -o "$1/pause" "${HACK_DIR}/node/pause/main.go"
}
busybox_rootfs() {  # busybox_rootfs ROOTFS: busybox's applets, users root and nonroot
  mkdir -p "$1"/{bin,agent,tmp,etc/stockade,proc,sys,dev}
  cp /bin/busybox "$1/bin/busybox"
  "$1/bin/busybox" --list | while read -r applet; do
    [[ "${applet}" == busybox ]] || ln -sf busybox "$1/bin/${applet}"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnonroot:x:65532:65532:nonroot:/:/bin/sh\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$1/etc/group"
}
agent_rootfs() {
  busybox_rootfs "$1"
  install -m 0755 "${HACK_DIR}/node/agent/agent.sh" "$1/agent/agent.sh"
}
# The example agent (examples/agent) as its Dockerfile lays it out, on busybox instead of
# Alpine: no curl, so it calls the model over plain HTTP with busybox wget.
example_agent_rootfs() {
  busybox_rootfs "$1"
  install -m 0755 "${REPO_ROOT}/examples/agent/agent.sh" "$1/agent/example-agent.sh"
}
build_images() {
  local out="$1"
  refuse_build "the node's images (${out})" node-binaries
  need_go
  [[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) is missing"
  mkdir -p "${out}"
  image "${out}" pause "${NODE_PAUSE_IMAGE}" /pause 65535:65535 pause_rootfs
  image "${out}" agent "${NODE_AGENT_IMAGE}" /agent/agent.sh 65532:65532 agent_rootfs
  image "${out}" example-agent "${NODE_EXAMPLE_AGENT_IMAGE}" /agent/example-agent.sh 65532:65532 \
    example_agent_rootfs
  touch "${out}/complete"
}

ensure_debian_packages
need_go() { command -v go >/dev/null || die "go is needed to build the node binaries"; }
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+${GOFLAGS} }-trimpath"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
[[ "${GOTOOLCHAIN}" == local ]] && export GOTOOLCHAIN=auto
total_start=${SECONDS}

bash "${HACK_DIR}/k8s-binaries.sh" kubelet
mkdir -p "${CONTAINERD_CACHE_BIN}" "${GVISOR_CACHE_BIN}" "${KUBE_ROUTER_CACHE_BIN}"
for name in containerd containerd-shim-runc-v2 ctr; do
  [[ -x "${CONTAINERD_CACHE_BIN}/${name}" ]] || { build_containerd; break; }
done
for name in runsc containerd-shim-runsc-v1; do
  [[ -x "${GVISOR_CACHE_BIN}/${name}" ]] || { build_gvisor; break; }
done

[[ -x "${KUBE_ROUTER_CACHE_BIN}/kube-router" ]] || build_kube_router

images="$(node_images_dir)"
[[ -e "${images}/complete" ]] ||
  timed "the node's images: ${NODE_PAUSE_IMAGE}, ${NODE_AGENT_IMAGE}, ${NODE_EXAMPLE_AGENT_IMAGE}" \
    build_images "${images}"

for path in "${images}"/{pause,agent,example-agent}.tar "${K8S_CACHE_BIN}/kubelet" "${CONTAINERD_CACHE_BIN}"/{containerd,containerd-shim-runc-v2,ctr} \
  "${GVISOR_CACHE_BIN}"/{runsc,containerd-shim-runsc-v1} "${KUBE_ROUTER_CACHE_BIN}/kube-router"; do
  [[ -s "${path}" ]] || die "${path} is still missing after the build"
  log "$(printf '%-26s %6s  %s' "$(basename "${path}")" "$(du -Lh "${path}" | cut -f1)" "${path}")"
done
log "node binaries ready in $((SECONDS - total_start))s"
