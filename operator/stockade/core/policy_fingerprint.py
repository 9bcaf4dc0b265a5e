"""The fingerprint of the chart's ValidatingAdmissionPolicy (generated).

Written by hack/manifests.sh (``make manifests``) from the rendered chart; do not
edit. See :func:`stockade.core.policy_integrity.policy_fingerprint`.
"""

EXPECTED = "4b79d1922a3cdf4fdfff53ead4d058026d06015bd92a4e6c0f36e84e96e7153e"
