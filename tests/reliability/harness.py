"""Machinery of the reliability suite: plans, expectations, samplers, checks, figures.

- :class:`Plan` is one Agent to create, with the outcome its spec dictates
  (:func:`expected_outcome`): the suite never asserts today's behaviour, only what the
  spec and the simulated pods (hack/kwok/README.md) make inevitable.
- :class:`Invariants` samples the namespace in a background thread (every ~0.5 s): no
  Agent with two live pods, no session with more admitted members than ``maxAgents`` or
  requests above its budget.
- :func:`wait_converged` waits until every Agent shows its expected outcome.
- :func:`log_problems` reads the operator's JSON log: errors, tracebacks, and anything
  that is not a log record.
- :func:`report` prints a ``RELIABILITY <test>: k=v ...`` line and writes the same figures
  to ``.cache/reliability/<test>.json`` (quoted by docs/develop.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config

from tests.integration.cluster import REPO_ROOT, SIM_EXIT_AFTER, SIM_EXIT_CODE, Cluster
from tests.integration.operator import GROUP, VERSION

FIGURES_DIR = REPO_ROOT / ".cache" / "reliability"
MANAGED = "app.kubernetes.io/managed-by=stockade"
AGENT_LABEL = "stockade.dev/agent"
SESSION_LABEL = "stockade.dev/session"
IMAGE = "registry.example/agent:1.0"
# Small requests: hundreds of agent pods fit on the 3 fake nodes (8 cpu each).
SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}


# --- figures ------------------------------------------------------------------------------


def report(test: str, **figures: Any) -> dict[str, Any]:
    """Print ``RELIABILITY <test>: k=v ...`` and write the figures as JSON."""
    shown = " ".join(
        f"{key}={value:.1f}s"
        if key.endswith("_in") and isinstance(value, float)
        else f"{key}={value}"
        for key, value in figures.items()
    )
    print(f"\nRELIABILITY {test}: {shown}", flush=True)
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    record = {"test": test, "at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    (FIGURES_DIR / f"{test}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


# --- plans and expectations ---------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The outcome an Agent's spec dictates. ``None`` fields are not checked."""

    phase: str
    reason: str | None = None
    attempts: int | None = None
    exit_code: int | None = None

    def mismatch(self, status: Mapping[str, Any]) -> str | None:
        """Why `status` is not (yet) this outcome; None when it is."""
        got = (status.get("phase"), status.get("reason"), status.get("attempts"))
        if status.get("phase") != self.phase:
            return f"phase {got}"
        if self.reason is not None and status.get("reason") != self.reason:
            return f"reason {got}"
        if self.attempts is not None and status.get("attempts") != self.attempts:
            return f"attempts {got}"
        if self.exit_code is not None and status.get("exitCode") != self.exit_code:
            return f"exitCode {status.get('exitCode')}"
        return None


def expected_outcome(spec: Mapping[str, Any]) -> Expect:
    """The terminal outcome dictated by an Agent's spec and its pods' simulated fate.

    - ``suspend: true``: Paused.
    - the pod exits 0: Succeeded after one attempt.
    - the pod exits non-zero: ``Never`` -> Failed/Error after one attempt;
      ``OnFailure`` -> Failed/BackoffLimitExceeded after ``backoffLimit + 1`` attempts.
    - the pod runs until stopped: Failed/DeadlineExceeded with ``activeDeadlineSeconds``,
      else Running.
    """
    if spec.get("suspend"):
        return Expect("Paused", "Suspended")
    annotations = (spec.get("podMetadata") or {}).get("annotations") or {}
    code = annotations.get(SIM_EXIT_CODE)
    if code is None:
        if spec.get("activeDeadlineSeconds") is not None:
            return Expect("Failed", "DeadlineExceeded")
        return Expect("Running")
    if int(code) == 0:
        return Expect("Succeeded", "Completed", attempts=1, exit_code=0)
    if spec.get("restartPolicy") == "OnFailure":
        limit = int(spec.get("backoffLimit", 3))
        return Expect("Failed", "BackoffLimitExceeded", attempts=limit + 1, exit_code=int(code))
    return Expect("Failed", "Error", attempts=1, exit_code=int(code))


def agent_spec(
    *,
    exit_code: int | None = None,
    exit_after: str = "2s",
    resources: Mapping[str, Any] | None = SMALL,
    **fields: Any,
) -> dict[str, Any]:
    """An Agent spec whose pod exits with `exit_code` after `exit_after` (None: runs on)."""
    spec: dict[str, Any] = {**fields}
    if "sessionRef" not in spec:
        spec.setdefault("image", IMAGE)
    if resources is not None:
        spec["resources"] = dict(resources)
    if exit_code is not None:
        annotations = {SIM_EXIT_CODE: str(exit_code), SIM_EXIT_AFTER: exit_after}
        spec["podMetadata"] = {"annotations": annotations}
    return spec


@dataclass
class Plan:
    """One Agent to create, its kind (for the figures) and the outcome its spec dictates."""

    name: str
    kind: str
    spec: dict[str, Any]
    expect: Expect = field(init=False)

    def __post_init__(self) -> None:
        self.expect = expected_outcome(self.spec)

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Agent",
            "metadata": {"name": self.name},
            "spec": self.spec,
        }


# --- raw, cheap reads ---------------------------------------------------------------------


class Reader:
    """Lists as raw JSON (no model deserialization: cheap enough to sample hundreds)."""

    def __init__(self, cluster: Cluster, own_client: bool = False) -> None:
        api = (
            config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            if own_client
            else cluster.api
        )
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.networking = client.NetworkingV1Api(api)

    @staticmethod
    def _items(response: Any) -> list[dict[str, Any]]:
        return list(json.loads(response.data).get("items") or [])

    def pods(self, namespace: str, selector: str = MANAGED) -> list[dict[str, Any]]:
        return self._items(
            self.core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False, _request_timeout=10
            )
        )

    def agents(self, namespace: str) -> list[dict[str, Any]]:
        return self._custom(namespace, "agents")

    def sessions(self, namespace: str) -> list[dict[str, Any]]:
        return self._custom(namespace, "agentsessions")

    def _custom(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        return self._items(
            self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, _preload_content=False, _request_timeout=10
            )
        )

    def leftovers(self, namespace: str, selector: str = MANAGED) -> dict[str, list[str]]:
        """Stockade's children left in `namespace`.

        Retained workspaces and the namespace's shared NetworkPolicies (which stay with
        the namespace by design) excluded.
        """
        kw: dict[str, Any] = {"label_selector": selector, "_preload_content": False}
        found = {
            "pods": self._items(self.core.list_namespaced_pod(namespace, **kw)),
            "configmaps": self._items(self.core.list_namespaced_config_map(namespace, **kw)),
            "networkpolicies": [
                policy
                for policy in self._items(
                    self.networking.list_namespaced_network_policy(namespace, **kw)
                )
                if "stockade.dev/agent" in (policy["metadata"].get("labels") or {})
            ],
            "pvcs": [
                pvc
                for pvc in self._items(
                    self.core.list_namespaced_persistent_volume_claim(namespace, **kw)
                )
                if (pvc["metadata"].get("annotations") or {}).get("stockade.dev/retained") != "true"
            ],
        }
        return {kind: [o["metadata"]["name"] for o in objs] for kind, objs in found.items() if objs}


def is_live(pod: Mapping[str, Any]) -> bool:
    """A pod that holds (or may yet hold) a running agent: not deleting, not finished."""
    deleting = (pod.get("metadata") or {}).get("deletionTimestamp") is not None
    phase = (pod.get("status") or {}).get("phase")
    return not deleting and phase not in ("Succeeded", "Failed")


def live_by_agent(pods: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pod in pods:
        if is_live(pod):
            agent = (pod["metadata"].get("labels") or {}).get(AGENT_LABEL, "?")
            out.setdefault(agent, []).append(pod["metadata"]["name"])
    return out


# --- sampled invariants -------------------------------------------------------------------


@dataclass(frozen=True)
class SessionLimits:
    """A session's caps, and each member's cpu request in millicores."""

    max_agents: int
    budget_millicpu: int | None
    member_millicpu: Mapping[str, int]


class Invariants:
    """Samples pods (and sessions) of namespaces every `interval` seconds in a thread.

    Records violations: an Agent with two live pods; a session whose
    ``status.admittedAgents`` is longer than ``maxAgents`` or whose admitted members
    request more cpu than its budget; more live member pods than ``maxAgents``. API
    errors (a restarting API server) are counted, not fatal.
    """

    def __init__(
        self,
        cluster: Cluster,
        namespaces: Iterable[str],
        sessions: Mapping[tuple[str, str], SessionLimits] | None = None,
        interval: float = 0.5,
    ) -> None:
        self.reader = Reader(cluster, own_client=True)
        self.namespaces = list(namespaces)
        self.sessions = dict(sessions or {})
        self.interval = interval
        self.samples = 0
        self.errors = 0
        self.max_live = 0
        self.max_admitted: Counter[str] = Counter()
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)

    def __enter__(self) -> Invariants:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _violation(self, text: str) -> None:
        if len(self.violations) < 200:
            stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
            self.violations.append(f"{stamp} {text}")

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
                self.samples += 1
            except Exception:  # the API server may be restarting: count and go on
                self.errors += 1
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.05))

    def sample(self) -> None:
        live_total = 0
        for namespace in self.namespaces:
            pods = self.reader.pods(namespace)
            live = live_by_agent(pods)
            live_total += sum(len(names) for names in live.values())
            for agent, names in live.items():
                if len(names) > 1:
                    self._violation(f"Agent {namespace}/{agent} has live pods {sorted(names)}")
            if any(ns == namespace for ns, _ in self.sessions):
                self._sample_sessions(namespace, pods)
        self.max_live = max(self.max_live, live_total)

    def _sample_sessions(self, namespace: str, pods: list[dict[str, Any]]) -> None:
        for body in self.reader.sessions(namespace):
            name = body["metadata"]["name"]
            limits = self.sessions.get((namespace, name))
            if limits is None:
                continue
            admitted = list((body.get("status") or {}).get("admittedAgents") or [])
            self.max_admitted[name] = max(self.max_admitted[name], len(admitted))
            if len(admitted) > limits.max_agents:
                self._violation(
                    f"session {name}: {len(admitted)} admitted > maxAgents {limits.max_agents}"
                )
            if limits.budget_millicpu is not None:
                used = sum(limits.member_millicpu.get(agent, 0) for agent in admitted)
                if used > limits.budget_millicpu:
                    self._violation(
                        f"session {name}: admitted members request {used}m cpu"
                        f" > budget {limits.budget_millicpu}m ({sorted(admitted)})"
                    )
            members = [
                p
                for p in pods
                if (p["metadata"].get("labels") or {}).get(SESSION_LABEL) == name and is_live(p)
            ]
            if len(members) > limits.max_agents:
                names = sorted(p["metadata"]["name"] for p in members)
                self._violation(
                    f"session {name}: {len(members)} live member pods > maxAgents"
                    f" {limits.max_agents} ({names})"
                )
            if limits.budget_millicpu is not None:
                used = sum(
                    limits.member_millicpu.get(p["metadata"]["labels"].get(AGENT_LABEL, ""), 0)
                    for p in members
                )
                if used > limits.budget_millicpu:
                    self._violation(
                        f"session {name}: live member pods request {used}m cpu"
                        f" > budget {limits.budget_millicpu}m"
                    )


# --- convergence --------------------------------------------------------------------------


def mismatches(reader: Reader, namespace: str, expect: Mapping[str, Expect]) -> dict[str, str]:
    """``name -> why`` for every Agent of `expect` not (yet) in its expected outcome."""
    found = {a["metadata"]["name"]: a for a in reader.agents(namespace)}
    out: dict[str, str] = {}
    for name, wanted in expect.items():
        body = found.get(name)
        if body is None:
            out[name] = "missing"
            continue
        status = body.get("status") or {}
        why = wanted.mismatch(status)
        if why is None and status.get("observedGeneration") != body["metadata"].get("generation"):
            why = (
                f"observedGeneration {status.get('observedGeneration')}"
                f" != generation {body['metadata'].get('generation')}"
            )
        if why is not None:
            out[name] = f"want {wanted.phase}/{wanted.reason}: {why} ({status.get('message')})"
    return out


def wait_converged(
    reader: Reader,
    namespace: str,
    expect: Mapping[str, Expect],
    timeout: float,
    what: str,
    interval: float = 1.0,
) -> float:
    """Wait until every Agent shows its expected outcome; return the seconds it took."""
    started = time.monotonic()
    last: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        try:
            last = mismatches(reader, namespace, expect)
        except Exception as exc:  # a restarting API server
            last = {"(api)": repr(exc)[:200]}
        if not last:
            return time.monotonic() - started
        time.sleep(interval)
    shown = "\n  ".join(f"{k}: {v}" for k, v in sorted(last.items())[:25])
    raise AssertionError(
        f"{what}: {len(last)} of {len(expect)} Agents not in their expected outcome after"
        f" {timeout:.0f}s:\n  {shown}"
    )


def wait_until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> float:
    """Wait until `probe()` is truthy (API errors count as falsy); return the seconds."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: last={last!r}")


# --- the operator's log -------------------------------------------------------------------

_TRACEBACK = re.compile(r"Traceback|Unhandled|unhandled", re.ASCII)
# kopf retries a request that met a transient API error (a closed connection, a 5xx, a
# 429 "storage is (re)initializing" just after a CRD is installed) and logs each try as
# an error record. Not an exception: allowed, and counted (kopf_retries). Its last
# try ("escalating") is not allowed.
KOPF_RETRY = r"^Request attempt #?\d+(/\d+)? failed; (will retry|TCP closed|SSL closed)"


def kopf_retries(text: str) -> int:
    """How many of kopf's transient-error retries the log shows."""
    return len(re.findall(KOPF_RETRY.lstrip("^"), text))


def log_problems(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Records of the operator's JSON log that show a failure.

    A record with severity error/fatal or with a traceback (``exc_info``), any line that
    is not a JSON record (Python's own tracebacks, a crash), and any mention of an
    unhandled exception; minus kopf's retries of transient API errors and records whose
    message matches one of the `allowed` regular expressions.
    """
    permitted = [re.compile(pattern) for pattern in (KOPF_RETRY, *allowed)]
    problems: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if _TRACEBACK.search(line) or "Error" in line or "Exception" in line:
                problems.append(line[:400])
            continue
        message = str(record.get("message", ""))
        bad = (
            record.get("severity") in ("error", "fatal")
            or record.get("exc_info")
            or _TRACEBACK.search(message)
        )
        if bad and not any(p.search(message) for p in permitted):
            problems.append(
                f"[{record.get('severity')}] {message[:300]}"
                + (f" | {str(record.get('exc_info'))[-300:]}" if record.get("exc_info") else "")
            )
    return problems


def assert_clean_log(text: str, allowed: Iterable[str] = ()) -> None:
    problems = log_problems(text, allowed)
    shown = "\n  ".join(problems[:15])
    assert not problems, f"the operator logged {len(problems)} failures:\n  {shown}"
