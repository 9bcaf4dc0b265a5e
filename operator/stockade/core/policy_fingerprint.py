"""The fingerprint of the chart's ValidatingAdmissionPolicy (generated).

Written by hack/manifests.sh (``make manifests``) from the rendered chart; do not
edit. See :func:`stockade.core.policy_integrity.policy_fingerprint`.
"""

EXPECTED = "012bd3074e9c119f3421729403eff413153b10d552e56380dbc6a147cab664ad"
