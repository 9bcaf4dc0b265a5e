#!/usr/bin/env bash
# Check what `make release` built in dist/ (`make release-check`, in .ci/run):
#   - SHA256SUMS holds for every file, and the krew manifest's sha256 is its archive's;
#   - the krew archive, unpacked as krew would, runs: its launcher installs the bundled
#     wheel into a fresh virtualenv (dependencies from PyPI) and `kubectl-stockade
#     --version` prints the release's version; that install holds the client and the
#     plugin but none of the operator's extras, and `stockade` says which extra it needs;
#   - the packaged chart passes `helm lint` and renders with an image set.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
PY="${PY:-.venv/bin/python}"
dist="${REPO_ROOT}/dist"
[[ -f "${dist}/SHA256SUMS" ]] || die "dist/ is empty: run \`make release\` first"
version="$("${PY}" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
(cd "${dist}" && sha256sum --quiet -c SHA256SUMS)

archive="${dist}/stockade-kubectl-${version}.tar.gz"
want="$("${PY}" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["platforms"][0]["sha256"])' "${dist}/krew/stockade.yaml")"
have="$(sha256sum "${archive}" | cut -d' ' -f1)"
[[ "${want}" == "${have}" ]] || die "krew manifest sha256 ${want} is not the archive's ${have}"
grep -q "releases/download/v${version}/stockade-kubectl-${version}.tar.gz" "${dist}/krew/stockade.yaml" ||
  die "krew manifest uri does not name ${version}"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
tar -xzf "${archive}" -C "${work}"
mkdir -p "${work}/bin"
ln -s "${work}/kubectl-stockade" "${work}/bin/kubectl-stockade"  # krew links it so
log "krew launcher: first run installs the wheel"
out="$("${work}/bin/kubectl-stockade" --version)"
[[ "${out}" == *"${version}"* ]] || die "kubectl-stockade --version printed ${out}, not ${version}"
out="$("${work}/bin/kubectl-stockade" --version)"  # the second run starts at once
[[ "${out}" == *"${version}"* ]] || die "second run printed ${out}"
# The default install is the client and the plugin: none of the operator's extras.
venv_py="${work}/.venv/bin/python"
"${venv_py}" -c 'import stockade.client, stockade.cli.complete' ||
  die "the client does not import from the default install"
for module in kopf prometheus_client orjson cryptography; do
  if "${venv_py}" -c "import ${module}" 2>/dev/null; then
    die "the default install pulled ${module} (an extra's dependency)"
  fi
done
if msg="$("${work}/.venv/bin/stockade" 2>&1)"; then die "the operator started without its extra"; fi
[[ "${msg}" == *"stockade[operator]"* ]] || die "the operator without its extra said: ${msg}"

helm="$(find_bin helm)" || die "helm not found: run \`make binaries\`"
chart_version="$("${PY}" -c 'import yaml; print(yaml.safe_load(open("helm/stockade/Chart.yaml"))["version"])')"
chart="${dist}/stockade-${chart_version}.tgz"
"${helm}" lint "${chart}" --set image.repository=registry.example.com/stockade >/dev/null
"${helm}" template stockade "${chart}" --set image.repository=registry.example.com/stockade >/dev/null
log "dist/ checks passed: ${out}"
