"""The RuntimeClass (sandbox) an Agent's pod runs under."""

from __future__ import annotations

from stockade.build.errors import SpecError
from stockade.config import OperatorConfig, setting

RUNTIME_CLASS_FIELD = "spec.runtimeClassName"


def resolve_runtime_class(
    spec_name: str | None, session_default: str | None, config: OperatorConfig
) -> str:
    """Choose the RuntimeClass of an Agent's pod: the Agent's, the session's, the operator's.

    Args:
        spec_name: ``spec.runtimeClassName`` of the Agent (None or "" when unset).
        session_default: ``spec.agentDefaults.runtimeClassName`` of its AgentSession.
        config: the operator configuration (``default_runtime_class`` and the
            ``allowed_runtime_classes`` allow-list: names or ``prefix*`` patterns,
            ``*`` for any class).

    Returns:
        The RuntimeClass name to put in ``pod.spec.runtimeClassName``. Whether that
        RuntimeClass exists is the API server's to say (RuntimeClassNotFound).

    Raises:
        SpecError: the allow-list forbids the resolved class; ``field`` is
            ``spec.runtimeClassName`` and the message names where the class came from.

    """
    if spec_name:
        name, source = spec_name, "the Agent's"
    elif session_default:
        name, source = session_default, "the AgentSession's default"
    else:
        name, source = config.default_runtime_class, "the operator's default"
    if not config.runtime_class_allowed(name):
        allowed = ", ".join(config.allowed_runtime_classes)
        raise SpecError(
            RUNTIME_CLASS_FIELD,
            f"RuntimeClass {name!r} ({source}) is not allowed (only sandboxes unless the "
            f"administrator says otherwise): {setting('allowed_runtime_classes')} "
            f"allows {allowed}",
        )
    return name
