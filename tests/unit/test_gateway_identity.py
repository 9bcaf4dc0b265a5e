from __future__ import annotations

import base64
import json
from typing import Any

from stockade.gateway.identity import (
    HOSTS_ANNOTATION,
    TOKEN_ANNOTATION,
    PodView,
    Refusal,
    basic_password,
    identify,
    parse_hosts_annotation,
    pod_view,
    token_sha256,
)

TOKEN = "s3cret-token"


def pod(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "namespace": "team-a",
            "name": "demo-1",
            "annotations": {
                TOKEN_ANNOTATION: token_sha256(TOKEN),
                HOSTS_ANNOTATION: json.dumps(["api.openai.com", "*.github.com"]),
            },
            "ownerReferences": [
                {
                    "apiVersion": "stockade.dev/v1alpha1",
                    "kind": "Agent",
                    "name": "demo",
                    "uid": "uid-1",
                    "controller": True,
                }
            ],
        },
        "status": {"podIP": "10.0.0.5", "phase": "Running"},
    }
    for path, value in over.items():
        section, key = path.split("__")
        if value is None:
            obj[section].pop(key, None)
        else:
            obj[section][key] = value
    return obj


def auth(password: str, user: str = "stockade") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_pod_view_reads_ip_phase_owner_token_and_hosts() -> None:
    view = pod_view(pod())
    assert (view.namespace, view.name, view.ip, view.phase) == (
        "team-a",
        "demo-1",
        "10.0.0.5",
        "Running",
    )
    assert view.agent_key == ("team-a", "demo", "uid-1")
    assert not view.deleting
    assert [h.name for h in view.hosts] == ["api.openai.com", "github.com"]


def test_a_running_agent_pod_with_the_right_token_is_the_caller() -> None:
    view = pod_view(pod())
    assert identify([view], "10.0.0.5", auth(TOKEN)) == view


def test_refusals() -> None:
    good = pod_view(pod())
    cases: list[tuple[list[PodView], str, str | None, str]] = [
        ([good], "10.0.0.6", auth(TOKEN), "no-pod"),
        ([good], "10.0.0.5", auth("other"), "bad-token"),
        ([good], "10.0.0.5", None, "no-credentials"),
        ([good], "10.0.0.5", "Bearer " + TOKEN, "no-credentials"),
        ([good], "10.0.0.5", "Basic !!!", "no-credentials"),
        ([pod_view(pod(status__phase="Pending"))], "10.0.0.5", auth(TOKEN), "no-pod"),
        (
            [pod_view(pod(metadata__deletionTimestamp="2026-01-01T00:00:00Z"))],
            "10.0.0.5",
            auth(TOKEN),
            "no-pod",
        ),
        ([pod_view(pod(metadata__ownerReferences=None))], "10.0.0.5", auth(TOKEN), "not-agent"),
        ([pod_view(pod(metadata__annotations={}))], "10.0.0.5", auth(TOKEN), "no-token"),
        ([good, pod_view(pod(metadata__name="demo-2"))], "10.0.0.5", auth(TOKEN), "ambiguous"),
    ]
    for pods, source, header, reason in cases:
        result = identify(pods, source, header)
        assert isinstance(result, Refusal), reason
        assert result.reason == reason


def test_only_a_controller_agent_of_the_stockade_group_counts() -> None:
    for owner in (
        {
            "apiVersion": "evil.dev/v1alpha1",
            "kind": "Agent",
            "name": "demo",
            "uid": "u",
            "controller": True,
        },
        {"apiVersion": "stockade.dev/v1alpha1", "kind": "Agent", "name": "demo", "uid": "u"},
        {
            "apiVersion": "stockade.dev/v1alpha1",
            "kind": "AgentSession",
            "name": "s",
            "uid": "u",
            "controller": True,
        },
    ):
        view = pod_view(pod(metadata__ownerReferences=[owner]))
        assert view.agent_name == ""
        assert isinstance(identify([view], "10.0.0.5", auth(TOKEN)), Refusal)


def test_a_terminated_pod_with_the_same_ip_does_not_make_it_ambiguous() -> None:
    old = pod_view(pod(metadata__name="demo-0", status__phase="Succeeded"))
    good = pod_view(pod())
    assert identify([old, good], "10.0.0.5", auth(TOKEN)) == good


def test_basic_password() -> None:
    assert basic_password(auth("a:b")) == "a:b"
    assert basic_password("basic " + base64.b64encode(b"u:").decode()) == ""
    assert basic_password("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert basic_password(None) is None


def test_the_hosts_annotation_must_be_a_json_string_list() -> None:
    assert parse_hosts_annotation('["a.com", 3]') == ()
    assert parse_hosts_annotation("a.com") == ()
    assert parse_hosts_annotation(None) == ()
    assert [p.name for p in parse_hosts_annotation('["a.com", "a.*.com"]')] == ["a.com"]
