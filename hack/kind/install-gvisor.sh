#!/usr/bin/env bash
# Install gVisor (runsc and containerd-shim-runsc-v1) into the nodes of a kind cluster.
#
#   hack/kind/install-gvisor.sh CLUSTER_NAME [GVISOR_VERSION]
#
# Each node (a container) downloads the pinned release from gVisor's release bucket,
# checks its sha512 sums, and installs both binaries into /usr/local/bin, where
# containerd finds the shim for the `runsc` runtime handler that hack/kind/cluster.yaml
# configures. containerd is restarted so that it picks the handler up cleanly.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

cluster="${1:?usage: install-gvisor.sh CLUSTER_NAME [GVISOR_VERSION]}"
version="${2:-${GVISOR_VERSION}}"
kind="${KIND:-kind}"

# Runs inside the node (Debian-based kindest/node image: curl and sha512sum exist).
# shellcheck disable=SC2016  # expanded by the node's shell, not this one
install_script='
set -eu
arch="$(uname -m)"
url="https://storage.googleapis.com/gvisor/releases/release/${GVISOR_VERSION}/${arch}"
cd "$(mktemp -d)"
for f in runsc containerd-shim-runsc-v1; do
  curl -fsSLO "${url}/${f}"
  curl -fsSLO "${url}/${f}.sha512"
done
sha512sum -c runsc.sha512 -c containerd-shim-runsc-v1.sha512
chmod a+rx runsc containerd-shim-runsc-v1
mv runsc containerd-shim-runsc-v1 /usr/local/bin/
systemctl restart containerd
/usr/local/bin/runsc --version
'

for node in $("${kind}" get nodes --name "${cluster}"); do
  log "installing gVisor ${version} into ${node}"
  docker exec --env "GVISOR_VERSION=${version}" "${node}" bash -c "${install_script}"
done
