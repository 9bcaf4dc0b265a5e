#!/usr/bin/env bash
# Find or build promtool, the pinned Prometheus' rule checker and unit tester; print its path.
#
# Looked up as $STOCKADE_PROMTOOL, then the project's cache
# ($STOCKADE_CACHE_DIR/prometheus/v<version>/bin/promtool); when missing it is built from
# the Go module proxy into the cache, as hack/k8s-binaries.sh builds the control plane:
# Prometheus 3.x publishes its Go module as github.com/prometheus/prometheus v0.3<minor>.<patch>,
# whose go.mod has replace directives, so `go install pkg@version` refuses it; a wrapper
# module requires it and copies those replace directives. Only cmd/promtool is built, with
# CGO off, and without the service-discovery plugins (build tag remove_all_sd: the cloud
# SDKs they pull in would triple the build; rule checks and rule unit tests need none).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${STOCKADE_PROMTOOL:-}" ]]; then
  [[ -x "${STOCKADE_PROMTOOL}" ]] || die "STOCKADE_PROMTOOL=${STOCKADE_PROMTOOL} is not executable"
  printf '%s\n' "${STOCKADE_PROMTOOL}"
  exit 0
fi
bin_dir="${STOCKADE_CACHE_DIR}/prometheus/v${PROMETHEUS_VERSION}/bin"
if [[ -x "${bin_dir}/promtool" ]]; then
  printf '%s\n' "${bin_dir}/promtool"
  exit 0
fi

refuse_build "promtool ${PROMETHEUS_VERSION}" promtool
command -v go >/dev/null || die "go is needed to build promtool"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+${GOFLAGS} }-trimpath"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
[[ "${GOTOOLCHAIN}" == local ]] && export GOTOOLCHAIN=auto

IFS=. read -r major minor patch <<<"${PROMETHEUS_VERSION}"
[[ "${major}" == 3 ]] || die "PROMETHEUS_VERSION=${PROMETHEUS_VERSION}: only Prometheus 3.x is supported"
module=github.com/prometheus/prometheus
version="v0.$((300 + minor)).${patch}"
dir="${STOCKADE_CACHE_DIR}/prometheus/v${PROMETHEUS_VERSION}/src"
start=${SECONDS}
log "building promtool ${PROMETHEUS_VERSION} (${module} ${version})"
mkdir -p "${dir}" "${bin_dir}"
gomod="$(cd "${dir}" && GOFLAGS=-mod=mod go mod download -json "${module}@${version}" |
  sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -s "${gomod}" ]] || die "could not download ${module}@${version}"
{
  echo "module stockade.dev/build/promtool"
  echo
  sed -n 's/^go \(.*\)/go \1/p' "${gomod}"
  echo
  echo "require ${module} ${version}"
  echo
  # Single-line replace directives of Prometheus' own go.mod (a block would need more).
  grep -E '^replace [^(]' "${gomod}" || true
} >"${dir}/go.mod"
(cd "${dir}" && go build -mod=mod -tags remove_all_sd -ldflags "-s -w" \
  -o "${bin_dir}/promtool" "${module}/cmd/promtool")
log "built promtool in $((SECONDS - start))s: $(du -h "${bin_dir}/promtool" | cut -f1)"
printf '%s\n' "${bin_dir}/promtool"
