"""stockade.client (issue 22) against the real API server and the real operator.

Pods are kwok's (hack/kwok/README.md): ``sim.stockade.dev/*`` annotations make them exit
with a code after a delay. Both the synchronous Client and the AsyncClient are used; a
user without rights is impersonated (as test_admission_policy.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube
from kubernetes import config

from stockade.client import (
    Agent,
    AgentFailed,
    AgentSession,
    AgentSpec,
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    Deleted,
    Forbidden,
    Invalid,
    NotFound,
    Phase,
    Timeout,
)
from tests.integration.auth import service_account_kubeconfig
from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    wait_for,
)
from tests.integration.operator import Agents

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"
RESULT = '{"result": "patched 3 files", "usage": {"inputTokens": 1200, "costUSD": 0.02}}'


def spec(code: int = 0, after: str = "1s", message: str | None = None) -> AgentSpec:
    annotations = {SIM_EXIT_CODE: str(code), SIM_EXIT_AFTER: after}
    if message is not None:
        annotations[SIM_TERMINATION_MESSAGE] = message
    return AgentSpec.model_validate({"image": IMAGE, "podMetadata": {"annotations": annotations}})


def named(name: str, body: AgentSpec) -> Agent:
    return Agent(metadata={"name": name}, spec=body)


@pytest.fixture
def kc(agents: Agents) -> Any:
    """A Client in the test's namespace (with the operator running)."""
    with Client(str(agents.cluster.kubeconfig), namespace=agents.namespace) as connected:
        yield connected


def async_client(agents: Agents, **kw: Any) -> AsyncClient:
    return AsyncClient(str(agents.cluster.kubeconfig), namespace=agents.namespace, **kw)


def test_run_succeeds_with_the_outcome(kc: Client) -> None:
    outcome = kc.run(spec(0, "1s", RESULT), timeout=60)
    assert outcome.phase == Phase.Succeeded and outcome.succeeded
    assert outcome.name.startswith("run-") and outcome.namespace == kc.namespace
    assert (outcome.reason, outcome.result, outcome.exit_code) == (
        "Completed",
        "patched 3 files",
        0,
    )
    assert outcome.usage is not None and outcome.usage.input_tokens == 1200
    assert outcome.attempts == 1


def test_run_of_a_failing_agent_raises_agent_failed(kc: Client) -> None:
    with pytest.raises(AgentFailed) as caught:
        kc.run(named("fails", spec(7, "500ms")), timeout=60)
    outcome = caught.value.outcome
    assert (outcome.phase, outcome.reason, outcome.exit_code) == (Phase.Failed, "Error", 7)
    assert caught.value.name == "fails"
    # check=False: the Failed outcome is returned instead.
    returned = kc.run(named("fails-too", spec(3, "500ms")), timeout=60, check=False)
    assert (returned.phase, returned.exit_code, returned.succeeded) == (Phase.Failed, 3, False)


def test_async_runs_concurrently(agents: Agents) -> None:
    async def main() -> list[Any]:
        async with async_client(agents) as ac:
            runs = [ac.run(spec(0, "1s", RESULT), timeout=60) for _ in range(3)]
            failing = ac.run(named("async-fails", spec(2, "500ms")), timeout=60, check=False)
            return list(await asyncio.gather(*runs, failing))

    *succeeded, failed = asyncio.run(main())
    assert [o.phase for o in succeeded] == [Phase.Succeeded] * 3
    assert len({o.name for o in succeeded}) == 3
    assert all(o.result == "patched 3 files" for o in succeeded)
    assert (failed.phase, failed.exit_code) == (Phase.Failed, 2)


def test_wait_times_out_with_the_last_phase(kc: Client, agents: Agents) -> None:
    kc.create(named("slow", spec(0, "120s")))
    kc.wait("slow", {"Running"}, timeout=30)
    started = time.monotonic()
    with pytest.raises(Timeout) as caught:
        kc.wait("slow", {"Succeeded"}, timeout=2)
    assert 2 <= time.monotonic() - started < 6
    assert (caught.value.last_phase, caught.value.timeout, caught.value.name) == (
        "Running",
        2,
        "slow",
    )

    async def main() -> Timeout:
        async with async_client(agents) as ac:
            try:
                await ac.wait("slow", [Phase.Failed], timeout=1.5)
            except Timeout as exc:
                return exc
        raise AssertionError("no Timeout")

    assert asyncio.run(main()).last_phase == "Running"


def test_not_found(kc: Client, agents: Agents) -> None:
    with pytest.raises(NotFound):
        kc.get("nope")
    with pytest.raises(NotFound):
        kc.wait("nope", timeout=5)
    with pytest.raises(NotFound):
        kc.delete("nope")
    with pytest.raises(NotFound):
        kc.get("nope", AgentSession)
    with pytest.raises(NotFound, match="namespace"):
        kc.get("nope", namespace="t-no-such-namespace")

    async def main() -> None:
        async with async_client(agents) as ac:
            with pytest.raises(NotFound):
                await ac.get("nope")
            with pytest.raises(NotFound):
                await ac.suspend("nope")

    asyncio.run(main())


def test_conflict_and_invalid(kc: Client) -> None:
    kc.create(named("twice", spec(0, "60s")))
    with pytest.raises(Conflict):
        kc.create(named("twice", spec(0, "60s")))
    # The CRD's CEL rules (not the Python models) limit the name to 52 characters.
    bad = {"kind": "Agent", "metadata": {"name": "x" * 60}, "spec": {"image": IMAGE}}
    with pytest.raises(Invalid) as caught:
        kc.create(bad)
    assert caught.value.status == 422
    assert [c.field for c in caught.value.causes] == ["metadata.name"]


def impersonated(cluster: Cluster, user: str) -> kube.ApiClient:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    api.set_default_header("Impersonate-User", user)
    api.set_default_header("Impersonate-Group", "system:authenticated")
    return api


def test_forbidden_for_a_user_without_rights(agents: Agents) -> None:
    name = agents.create("theirs", spec(0, "60s").model_dump(by_alias=True, exclude_none=True))
    assert name["metadata"]["name"] == "theirs"
    api = impersonated(agents.cluster, "nobody@example.com")
    nobody = Client(namespace=agents.namespace, api_client=api)
    with pytest.raises(Forbidden) as caught:
        nobody.get("theirs")
    assert caught.value.status == 403 and "nobody@example.com" in str(caught.value)
    with pytest.raises(Forbidden):
        nobody.run(spec(), timeout=10)
    with pytest.raises(Forbidden):
        nobody.list()
    with pytest.raises(Forbidden):
        nobody.wait("theirs", timeout=5)

    async def main() -> None:
        from kubernetes.aio import client as aclient
        from kubernetes.aio import config as aconfig

        configuration = aclient.Configuration()
        await aconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(agents.cluster.kubeconfig), client_configuration=configuration
        )
        api = aclient.ApiClient(configuration)
        api.set_default_header("Impersonate-User", "nobody@example.com")  # type: ignore[no-untyped-call]
        api.set_default_header("Impersonate-Group", "system:authenticated")  # type: ignore[no-untyped-call]
        try:
            ac = AsyncClient(namespace=agents.namespace, api_client=api)
            with pytest.raises(Forbidden):
                await ac.get("theirs")
            with pytest.raises(Forbidden):
                await ac.wait("theirs", timeout=5)
        finally:
            await api.close()  # type: ignore[no-untyped-call]

    asyncio.run(main())


def test_forbidden_for_a_service_account_with_read_only_rights(
    agents: Agents, tmp_path: Path
) -> None:
    """A real token (a ServiceAccount's kubeconfig): RBAC grants get/list/watch on Agents
    only, so reads and waits work and creating is Forbidden."""
    cluster, namespace = agents.cluster, agents.namespace
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "reader")
    cluster.kubectl(
        "-n", namespace, "create", "role", "agent-reader", "--verb=get,list,watch",
        "--resource=agents.stockade.dev",
    )  # fmt: skip
    cluster.kubectl(
        "-n", namespace, "create", "rolebinding", "agent-reader", "--role=agent-reader",
        f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    token = cluster.kubectl("-n", namespace, "create", "token", "reader").strip()
    kubeconfig = str(service_account_kubeconfig(cluster, token, tmp_path / "reader"))
    agents.create("readable", spec(0, "1s").model_dump(by_alias=True, exclude_none=True))
    reader = Client(kubeconfig, namespace=namespace)
    done = reader.wait("readable", timeout=60)
    assert done.status is not None and done.status.phase == Phase.Succeeded
    with pytest.raises(Forbidden) as caught:
        reader.create(named("mine", spec()))
    assert f"system:serviceaccount:{namespace}:reader" in str(caught.value)
    with pytest.raises(Forbidden):
        reader.suspend("readable")
    with pytest.raises(Forbidden):
        reader.list(AgentSession)

    async def main() -> None:
        async with AsyncClient(kubeconfig, namespace=namespace) as ac:
            assert [a.metadata["name"] for a in await ac.list()] == ["readable"]
            with pytest.raises(Forbidden):
                await ac.delete("readable")
            assert ac.created == []

    asyncio.run(main())


def test_deletion_mid_wait_raises_deleted(kc: Client, agents: Agents) -> None:
    kc.create(named("doomed", spec(0, "120s")))
    kc.wait("doomed", {"Running"}, timeout=30)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            kc.wait("doomed", timeout=60)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(1)
    agents.delete("doomed")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Deleted), errors

    kc.create(named("doomed-async", spec(0, "120s")))
    kc.wait("doomed-async", {"Running"}, timeout=30)

    async def main() -> BaseException | None:
        async with async_client(agents) as ac:
            waiting = asyncio.create_task(ac.wait("doomed-async", timeout=60))
            await asyncio.sleep(1)
            await ac.delete("doomed-async")
            try:
                await asyncio.wait_for(waiting, 30)
            except Deleted as exc:
                return exc
        return None

    assert isinstance(asyncio.run(main()), Deleted)


def test_wait_survives_watch_expiry_and_rewatches(
    kc: Client, agents: Agents, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch from a long-gone resourceVersion answers 410 Gone; one-second watch calls
    end over and over: the wait re-reads, re-watches and still sees the end."""
    caplog.set_level(logging.INFO, logger="stockade.client")
    kc.watch_seconds = 1
    kc.create(named("expiring", spec(0, "4s", RESULT)))
    done = kc.wait("expiring", {"Succeeded"}, timeout=60, resource_version="1")
    assert done.status is not None and done.status.result == "patched 3 files"
    assert "expired (410 Gone)" in caplog.text

    caplog.clear()
    kc.create(named("expiring-async", spec(0, "4s")))

    async def main() -> Agent:
        async with async_client(agents, watch_seconds=1) as ac:
            return await ac.wait("expiring-async", {"Succeeded"}, timeout=60, resource_version="1")

    finished = asyncio.run(main())
    assert finished.status is not None and finished.status.phase == Phase.Succeeded
    assert "expired (410 Gone)" in caplog.text


def test_suspend_and_resume(kc: Client, agents: Agents) -> None:
    kc.create(named("pausable", spec(0, "120s")))
    kc.wait("pausable", {"Running"}, timeout=30)
    assert kc.suspend("pausable").spec.suspend is True
    paused = kc.wait("pausable", {"Paused"}, timeout=30)
    assert paused.status is not None and paused.status.reason == "Suspended"
    assert kc.resume("pausable").spec.suspend is False
    kc.wait("pausable", {"Running"}, timeout=30)

    async def main() -> None:
        async with async_client(agents) as ac:
            await ac.suspend("pausable")
            await ac.wait("pausable", {"Paused"}, timeout=30)
            await ac.resume("pausable")
            await ac.wait("pausable", lambda a: a.status.phase == Phase.Running, timeout=30)

    asyncio.run(main())


def test_sessions_create_get_list_delete(kc: Client) -> None:
    session = kc.create(
        {"kind": "AgentSession", "metadata": {"name": "batch"}, "spec": {"maxAgents": 2}}
    )
    assert isinstance(session, AgentSession) and session.spec.max_agents == 2
    assert kc.get("batch", AgentSession).metadata["uid"] == session.metadata["uid"]
    assert [s.metadata["name"] for s in kc.list(AgentSession)] == ["batch"]
    kc.wait("batch", {"Active"}, kind=AgentSession, timeout=30)
    assert kc.suspend("batch", AgentSession).spec.suspend is True
    kc.delete("batch", AgentSession)
    wait_for(lambda: not kc.list(AgentSession), timeout=30, what="session deleted")


def test_list_get_and_logs(kc: Client, agents: Agents) -> None:
    kc.create(named("listed", spec(0, "120s")), namespace=agents.namespace)
    assert [a.metadata["name"] for a in kc.list()] == ["listed"]  # before the next one
    assert kc.list(label_selector="nothing=here") == []
    assert kc.get("listed").spec.image == IMAGE
    never_started = spec().model_copy(update={"suspend": True})
    kc.create(named("never-started", never_started))
    kc.wait("never-started", {"Paused"}, timeout=30)
    with pytest.raises(NotFound, match="no pod yet"):
        kc.logs("never-started")  # raised at the call, before any iteration
    kc.wait("listed", {"Running"}, timeout=30)
    # kwok's pods have no logs: the API server answers with an error, typed.
    with pytest.raises(ClientError) as caught:
        list(kc.logs("listed"))
    assert caught.value.kind == "Pod"

    async def main() -> ClientError:
        async with async_client(agents) as ac:
            try:
                async for _ in ac.logs("listed", follow=True):
                    pass
            except ClientError as exc:
                return exc
        raise AssertionError("no ClientError")

    assert asyncio.run(main()).kind == "Pod"


def test_context_manager_deletes_what_it_made(agents: Agents) -> None:
    with Client(str(agents.cluster.kubeconfig), namespace=agents.namespace) as kc:
        kc.create(named("temporary", spec(0, "120s")))
        kc.create({"kind": "AgentSession", "metadata": {"name": "temp"}, "spec": {}})
        kc.wait("temporary", {"Running"}, timeout=30)
    agents.create("kept", {"image": IMAGE})
    wait_for(lambda: not agents.exists("temporary"), timeout=30, what="Agent deleted on exit")
    assert agents.exists("kept")
    observer = Client(str(agents.cluster.kubeconfig), namespace=agents.namespace)
    wait_for(lambda: not observer.list(AgentSession), timeout=30, what="AgentSession deleted")

    async def main() -> None:
        async with async_client(agents) as ac:
            await ac.create(named("temporary-async", spec(0, "120s")))
            assert ac.created == [("Agent", agents.namespace, "temporary-async")]

    asyncio.run(main())
    wait_for(lambda: not agents.exists("temporary-async"), timeout=30, what="async deletion")


def readme_example() -> str:
    """The Python block of README.md's "Use it from Python" section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs(agents: Agents, tmp_path: Path) -> None:
    """The README's example, with kwok's exit annotations in its spec, in a subprocess whose
    kubeconfig context names the test's namespace (the client's default namespace)."""
    kubeconfig = tmp_path / "kubeconfig"
    loaded = yaml.safe_load(agents.cluster.kubeconfig.read_text())
    current = next(c for c in loaded["contexts"] if c["name"] == loaded["current-context"])
    current["context"]["namespace"] = agents.namespace
    kubeconfig.write_text(yaml.safe_dump(loaded))
    example = readme_example()
    original = next(line for line in example.splitlines() if line.startswith("spec = "))
    body = spec(0, "1s", RESULT).model_dump(by_alias=True, exclude_none=True, mode="json")
    simulated = f"spec = AgentSpec.model_validate({body!r})"
    done = subprocess.run(
        [sys.executable, "-c", example.replace(original, simulated)],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Succeeded Completed 0"
    assert lines[1].startswith("patched 3 files input_tokens=1200")
    observer = Client(str(kubeconfig))
    assert observer.namespace == agents.namespace

    async def connected_namespace() -> str:
        async with AsyncClient(str(kubeconfig)) as ac:
            return ac.namespace

    assert asyncio.run(connected_namespace()) == agents.namespace
    wait_for(lambda: not observer.list(), timeout=30, what="the example's Agent deleted")


class CuttableProxy:
    """A loopback TCP relay to the API server whose connections the test can cut.

    ``cut(refuse_for)`` closes every open connection and, for ``refuse_for`` seconds,
    closes new ones at once (the API server looks unreachable). ``accepted`` counts the
    connections made.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.refuse_until = 0.0
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self.refuse_until:
                downstream.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.accepted += 1
                self.open += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def cut(self, refuse_for: float) -> None:
        self.refuse_until = time.monotonic() + refuse_for
        with self.lock:
            live, self.open = self.open, []
        for end in live:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.cut(0)


@pytest.fixture
def proxied(agents: Agents, tmp_path: Path) -> Any:
    """(proxy, kubeconfig path): a kubeconfig that reaches the API server through the proxy."""
    loaded = yaml.safe_load(agents.cluster.kubeconfig.read_text())
    server = urllib.parse.urlsplit(loaded["clusters"][0]["cluster"]["server"])
    proxy = CuttableProxy((server.hostname or "127.0.0.1", server.port or 443))
    loaded["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = tmp_path / "proxied"
    kubeconfig.write_text(yaml.safe_dump(loaded))
    yield proxy, str(kubeconfig)
    proxy.close()


def test_wait_reconnects_after_dropped_connections(
    agents: Agents, proxied: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection is cut mid-watch and the API server is unreachable for a while:
    the wait reconnects, re-reads and still sees the Agent succeed."""
    caplog.set_level(logging.INFO, logger="stockade.client")
    proxy, kubeconfig = proxied
    kc = Client(kubeconfig, namespace=agents.namespace)
    kc.create(named("flaky-network", spec(0, "6s", RESULT)))
    kc.wait("flaky-network", {"Running"}, timeout=30)
    cutter = threading.Timer(1.5, proxy.cut, args=(2.0,))
    cutter.start()
    before = proxy.accepted
    done = kc.wait("flaky-network", timeout=60)
    cutter.join()
    assert done.status is not None and done.status.phase == Phase.Succeeded
    assert proxy.accepted > before  # it connected again after the cut
    assert "flaky-network dropped" in caplog.text

    kc.create(named("flaky-network-async", spec(0, "6s")))

    async def main() -> Agent:
        async with AsyncClient(kubeconfig, namespace=agents.namespace) as ac:
            await ac.wait("flaky-network-async", {"Running"}, timeout=30)
            loop = asyncio.get_running_loop()
            loop.call_later(1.5, proxy.cut, 2.0)
            return await ac.wait("flaky-network-async", timeout=60)

    before = proxy.accepted
    finished = asyncio.run(main())
    assert finished.status is not None and finished.status.phase == Phase.Succeeded
    assert proxy.accepted > before
    assert "flaky-network-async dropped" in caplog.text
