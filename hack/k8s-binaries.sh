#!/usr/bin/env bash
# Find or build the pinned binaries of the local control plane.
#
# Each binary in K8S_BINARIES (hack/lib.sh) is looked up in $STOCKADE_K8S_BIN, then
# $KUBEBUILDER_ASSETS, then the project's cache ($STOCKADE_CACHE_DIR/k8s/v<version>/bin);
# whatever is missing is built from the Go module proxy into the cache:
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubectl from k8s.io/kubernetes,
#     through a wrapper module whose replace list maps each staging module (v0.0.0 in
#     k8s.io/kubernetes' go.mod) to its published v0.<minor>.<patch>, generated from that go.mod;
#   - etcd from go.etcd.io/etcd/server/v3 (its main package runs etcdmain), via a wrapper
#     module because its own go.mod has replace directives;
#   - kwok and kwokctl from sigs.k8s.io/kwok, helm from helm.sh/helm/v4 (go install).
# With a warm cache it does nothing. Prints what it builds and how long each step took.
#
# Arguments, when given, name more commands of k8s.io/kubernetes/cmd to find or build the
# same way (hack/node-binaries.sh passes `kubelet`; the control plane does not need it).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+${GOFLAGS} }-trimpath"
# A pinned module may ask for a newer Go; let the go command fetch it from the proxy.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
[[ "${GOTOOLCHAIN}" == local ]] && export GOTOOLCHAIN=auto

missing() {  # missing NAME...: print the names that find_bin cannot resolve
  local name
  for name in "$@"; do find_bin "${name}" >/dev/null || printf '%s\n' "${name}"; done
}

timed() {  # timed LABEL CMD...: run CMD, log how long it took
  local label="$1" start=${SECONDS}; shift
  log "building ${label}"
  "$@"
  log "built ${label} in $((SECONDS - start))s"
}

mkdir -p "${K8S_CACHE_BIN}"
build_dir="${STOCKADE_CACHE_DIR}/k8s/v${K8S_VERSION}/src"
total_start=${SECONDS}

# write_wrapper DIR MODULE VERSION: a go.mod in DIR that requires MODULE@VERSION.
write_wrapper() {
  local dir="$1" module="$2" version="$3" go_directive
  mkdir -p "${dir}"
  go_directive="$(cd "${dir}" && go mod download -json "${module}@${version}" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' | xargs sed -n 's/^go \(.*\)/\1/p')"
  {
    echo "module stockade.dev/build/$(basename "${dir}")"
    echo
    echo "go ${go_directive}"
    echo
    echo "require ${module} ${version}"
  } >"${dir}/go.mod"
}

build_kubernetes() {
  local names=("$@") dir="${build_dir}/kubernetes" gomod minor pkgs=() name
  write_wrapper "${dir}" k8s.io/kubernetes "v${K8S_VERSION}"
  gomod="$(cd "${dir}" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  # k8s.io/foo => ./staging/src/k8s.io/foo  becomes  k8s.io/foo => k8s.io/foo v0.<minor>.<patch>
  minor="0.${K8S_VERSION#*.}"
  {
    echo
    echo "replace ("
    sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 v${minor}#p" "${gomod}"
    echo ")"
  } >>"${dir}/go.mod"
  log "wrapper module replaces $(grep -c '=> k8s.io' "${dir}/go.mod") staging modules with v${minor}"
  for name in "${names[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${name}"); done
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version" ldflags="-s -w"
  local kv
  for kv in "gitVersion=v${K8S_VERSION}" "gitMajor=${K8S_VERSION%%.*}" \
    "gitMinor=$(cut -d. -f2 <<<"${K8S_VERSION}")" "gitTreeState=clean" \
    "buildDate=1970-01-01T00:00:00Z"; do
    ldflags+=" -X ${v}.${kv} -X ${c}.${kv}"
  done
  (cd "${dir}" && go mod download && go build -mod=mod -ldflags "${ldflags}" -o "${K8S_CACHE_BIN}/" "${pkgs[@]}")
}

build_etcd() {
  local dir="${build_dir}/etcd"
  write_wrapper "${dir}" go.etcd.io/etcd/server/v3 "v${ETCD_VERSION}"
  (cd "${dir}" && go mod download && go build -mod=mod -ldflags "-s -w" \
    -o "${K8S_CACHE_BIN}/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  local name
  for name in "$@"; do
    GOBIN="${K8S_CACHE_BIN}" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/${name}@v${KWOK_VERSION}"
  done
}

build_helm() {
  GOBIN="${K8S_CACHE_BIN}" go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v${HELM_VERSION}" \
    "helm.sh/helm/v4/cmd/helm@v${HELM_VERSION}"
}

mapfile -t k8s_missing < <(missing kube-apiserver kube-controller-manager kube-scheduler kubectl "$@")
mapfile -t kwok_missing < <(missing kwok kwokctl)
if ((${#k8s_missing[@]} + ${#kwok_missing[@]})) || [[ -n "$(missing etcd helm)" ]]; then
  refuse_build "$(missing "${K8S_BINARIES[@]}" "$@" | xargs)" "$( (($#)) && echo node-binaries || echo binaries)"
  command -v go >/dev/null || die "go is needed to build the control plane binaries"
fi
((${#k8s_missing[@]})) && timed "Kubernetes v${K8S_VERSION}: ${k8s_missing[*]}" build_kubernetes "${k8s_missing[@]}"
[[ -n "$(missing etcd)" ]] && timed "etcd v${ETCD_VERSION}" build_etcd
((${#kwok_missing[@]})) && timed "kwok v${KWOK_VERSION}: ${kwok_missing[*]}" build_kwok "${kwok_missing[@]}"
[[ -n "$(missing helm)" ]] && timed "helm v${HELM_VERSION}" build_helm

for name in "${K8S_BINARIES[@]}" "$@"; do
  path="$(find_bin "${name}")" || die "${name} is still missing after the build"
  log "$(printf '%-24s %6s  %s' "${name}" "$(du -Lh "${path}" | cut -f1)" "${path}")"
done
log "control plane binaries ready in $((SECONDS - total_start))s"
