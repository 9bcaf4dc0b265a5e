"""The error the builders raise when a spec cannot become a Kubernetes object."""

from __future__ import annotations


class SpecError(ValueError):
    """An Agent's spec cannot be turned into its children (the Agent gets ``InvalidSpec``).

    Attributes:
        field: the offending field's path in the Kubernetes API conventions' dotted form,
            for example ``spec.runtimeClassName`` or ``spec.resources.limits.cpu``.
        message: what is wrong, for a person (no trailing period).

    ``str(error)`` is ``"<field>: <message>"``, ready for ``status.message``.

    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
