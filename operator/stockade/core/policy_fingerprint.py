"""The fingerprint of the chart's ValidatingAdmissionPolicy (generated).

Written by hack/manifests.sh (``make manifests``) from the rendered chart; do not
edit. See :func:`stockade.core.policy_integrity.policy_fingerprint`.
"""

EXPECTED = "d14cd4e424d0d25f491a6ca817869671cf97dcfd92291a88cdeda43bbc9e9f69"
