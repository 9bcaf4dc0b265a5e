#!/usr/bin/env bash
# `make test`: every test suite, then the Agent and AgentSession suites again with the
# operator authenticated as the Helm chart's ServiceAccount, with cluster-wide and with
# namespaced RBAC (STOCKADE_TEST_AUTH, tests/integration/auth.py).
#
# The three pytest runs share one local cluster: it is started here when none is
# running and deleted at the end if it was started here (STOCKADE_KEEP_CLUSTER=1 keeps
# it). With STOCKADE_USE_EXISTING_CLUSTER=1 the cluster named by KUBECONFIG is used and
# nothing is started or stopped. Arguments are passed to the first pytest run.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"
PY="${REPO_ROOT}/.venv/bin/python"

# The Agent, AgentSession and admission-policy suites, then the identity checks (which read the operator's
# log of the whole run), once per service-account mode.
SA_SUITE=(
  tests/integration/test_agents.py
  tests/integration/test_sessions.py
  tests/integration/test_admission_policy.py
  tests/integration/test_admission_code.py
  tests/integration/test_operator_auth.py
)

# promtool checks the chart's alerts (tests/integration/test_alerts.py): build it now
# when it is missing, so its build is not charged to a test's timeout.
bash "${HACK_DIR}/promtool.sh" >/dev/null

started_here=false
if [[ "${STOCKADE_USE_EXISTING_CLUSTER:-}" != 1 ]]; then
  bash "${HACK_DIR}/k8s-binaries.sh"
  kubectl="$(find_bin kubectl)"
  if ! { [[ -s "${STOCKADE_KUBECONFIG}" ]] &&
    "${kubectl}" --kubeconfig "${STOCKADE_KUBECONFIG}" get --raw /readyz >/dev/null 2>&1; }; then
    started_here=true
  fi
  bash "${HACK_DIR}/cluster-up.sh"
fi
cleanup() {
  if [[ "${started_here}" == true && "${STOCKADE_KEEP_CLUSTER:-}" != 1 ]]; then
    bash "${HACK_DIR}/cluster-down.sh" || true
  fi
}
trap cleanup EXIT

start=${SECONDS}
log "pytest tests (operator as the cluster admin)"
"${PY}" -m pytest tests "$@"
for mode in serviceaccount-cluster serviceaccount-namespaced; do
  log "pytest ${SA_SUITE[*]} (operator as the chart's ServiceAccount: ${mode})"
  STOCKADE_TEST_AUTH="${mode}" "${PY}" -m pytest "${SA_SUITE[@]}"
done
log "all test runs passed in $((SECONDS - start))s"
