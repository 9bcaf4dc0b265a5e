"""The ``kubectl stockade`` commands (click). Exit codes: :mod:`stockade.cli.errors`.

Connection flags (``--kubeconfig``, ``--context``, ``-n/--namespace``) are accepted both
before the command (``kubectl stockade -n team run ...``) and after it; the later wins.
kubectl passes its ``KUBECONFIG`` to plugins, which the client reads by default.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click
import yaml

from stockade import __version__
from stockade.cli import format as fmt
from stockade.cli.errors import FAILED, NOT_INSTALLED, OK, TIMEOUT, USAGE, CliError
from stockade.cli.manifest import agent_manifest, check_name

if TYPE_CHECKING:  # the client (kubernetes) is imported by the commands that connect
    from stockade.cli.connection import Connection

F = TypeVar("F", bound=Callable[..., Any])

OPERATOR_GRACE_SECONDS = float(os.environ.get("STOCKADE_CLI_OPERATOR_GRACE_SECONDS", "15"))
"""How long ``run --wait`` waits for a first status before it says no operator runs."""


def _colour() -> bool | None:
    """None (click decides: colour on a TTY only), False when NO_COLOR is set."""
    return False if os.environ.get("NO_COLOR") else None


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    """Print ``text``, escaped by :func:`fmt.terminal_safe`; colours only on a terminal.

    Every line the plugin prints (but the raw bytes of ``logs`` and ``exec``, as kubectl
    prints them) goes through here, so agent-controlled text can never drive the terminal.
    """
    click.echo(fmt.terminal_safe(text), err=err, nl=nl, color=_colour())


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.ensure_object(dict)[param.name] = value
    return value


def connection_options(fn: F) -> F:
    """Add ``--kubeconfig``, ``--context``, ``-n/--namespace`` (stored in the context)."""
    options = [
        click.option(
            "--kubeconfig",
            default=None,
            expose_value=False,
            callback=_remember,
            help="Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config).",
        ),
        click.option(
            "--context",
            default=None,
            expose_value=False,
            callback=_remember,
            help="The kubeconfig context to use.",
        ),
        click.option(
            "-n",
            "--namespace",
            default=None,
            expose_value=False,
            callback=_remember,
            help="The namespace (default: the context's, else 'default').",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def connect(ctx: click.Context) -> Connection:
    """A :class:`Connection` for the connection flags given anywhere on the command line."""
    from stockade.cli.connection import Connection, Target

    stored = _stored(ctx)
    return Connection(
        Target(
            kubeconfig=stored.get("kubeconfig"),
            context=stored.get("context"),
            namespace=stored.get("namespace"),
        )
    )


def _stored(ctx: click.Context) -> dict[str, Any]:
    # Subcommands share the group's ctx.obj, so flags after the command override.
    found = ctx.find_object(dict)
    return dict(found) if found else {}


class Group(click.Group):
    """A group that prints :class:`CliError` as ``error: ...`` and exits with its code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map CliError and Ctrl-C to exit codes."""
        try:
            return super().invoke(ctx)
        except CliError as exc:
            echo(click.style("error: ", fg="red", bold=True) + exc.message, err=True)
            ctx.exit(exc.code)
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kubectl stockade")
@connection_options
def cli() -> None:
    """Run and inspect Stockade Agents (sandboxed AI agents) and AgentSessions.

    \b
    Exit codes: 0 success; 1 the Agent Failed, or an error (not found, API error,
    not Running); 2 usage error; 3 timeout; 4 Stockade not installed (no CRDs) or no
    operator running; exec: the command's exit code.
    """


# --- run ---------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--image", help="The agent's container image (required without --session).")
@click.option("--task", help="The task text handed to the agent.")
@click.option(
    "--task-file",
    type=click.File("r"),
    help="Read the task from a file ('-': stdin); instead of --task.",
)
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="Agent config.")
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", help="Environment variable.")
@click.option("--session", help="The AgentSession the Agent joins (same namespace).")
@click.option("--runtime", help="The sandbox RuntimeClass (gvisor, kata, ...).")
@click.option(
    "--egress",
    type=click.Choice(["None", "DNS", "Internet"]),
    help="Network egress (default: the session's, else None).",
)
@click.option(
    "--restart-policy", type=click.Choice(["Never", "OnFailure"]), help="Retry failed attempts."
)
@click.option("--backoff-limit", type=click.IntRange(0, 100), help="Retries under OnFailure.")
@click.option("--deadline", help="activeDeadlineSeconds as a duration (e.g. 30m).")
@click.option(
    "--pod-annotation",
    "pod_annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="An annotation for the agent's pod (spec.podMetadata.annotations).",
)
@click.option("--wait", is_flag=True, help="Follow the Agent until it finishes.")
@click.option("--timeout", default="10m", show_default=True, help="How long --wait waits.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="Print the Agent.")
@click.option("--dry-run", is_flag=True, help="Print the Agent (-o, default yaml); create nothing.")
@connection_options
@click.pass_context
def run(
    ctx: click.Context,
    name: str,
    image: str | None,
    task: str | None,
    task_file: Any,
    configs: tuple[str, ...],
    envs: tuple[str, ...],
    session: str | None,
    runtime: str | None,
    egress: str | None,
    restart_policy: str | None,
    backoff_limit: int | None,
    deadline: str | None,
    pod_annotations: tuple[str, ...],
    wait: bool,
    timeout: str,
    output: str | None,
    dry_run: bool,
) -> None:
    """Create the Agent NAME; with --wait, follow it and print its result.

    \b
    kubectl stockade run hello --image ghcr.io/example/agent:1 --task "Say hello" --wait

    With --wait it prints a line per phase transition, then the outcome, the result and
    the usage, and exits 0 if the Agent Succeeded, 1 if it Failed, 3 on --timeout, 4 if
    no operator gives it a status.
    """
    if task and task_file:
        raise CliError("give --task or --task-file, not both", USAGE)
    if task_file is not None:
        task = task_file.read()
    wait_seconds = fmt.parse_duration(timeout)
    deadline_seconds = max(1, int(fmt.parse_duration(deadline))) if deadline else None
    connection = None if dry_run else connect(ctx)
    namespace = connection.namespace if connection else _dry_run_namespace(ctx)
    manifest = agent_manifest(
        name,
        namespace,
        image=image,
        task=task,
        config=fmt.parse_pairs(configs, "--config"),
        session=session,
        runtime=runtime,
        egress=egress,
        env=fmt.parse_pairs(envs, "--env"),
        pod_annotations=fmt.parse_pairs(pod_annotations, "--pod-annotation"),
        restart_policy=restart_policy,
        backoff_limit=backoff_limit,
        active_deadline_seconds=deadline_seconds,
    )
    if connection is None:
        _print_object(manifest, output or "yaml")
        return
    created = connection.create_agent(manifest)
    if output:
        _print_object(created, output)
    else:
        echo(f"agent.stockade.dev/{name} created")
    if wait:
        ctx.exit(follow(connection, name, wait_seconds))


def _dry_run_namespace(ctx: click.Context) -> str:
    """The namespace for --dry-run: the flag, else the kubeconfig's, else 'default'."""
    stored = _stored(ctx)
    if stored.get("namespace"):
        return str(stored["namespace"])
    try:
        return connect(ctx).namespace
    except CliError:
        return "default"


def _print_object(obj: dict[str, Any], output: str) -> None:
    if output == "json":
        echo(fmt.to_json(obj))
    else:
        echo(yaml.safe_dump(obj, sort_keys=False).rstrip())


def follow(connection: Connection, name: str, timeout: float) -> int:
    """Print each new transition of Agent ``name`` until it finishes; the exit code.

    0 Succeeded, 1 Failed or deleted, 3 after ``timeout`` seconds, 4 when it has no
    status ``OPERATOR_GRACE_SECONDS`` after the start (no operator seems to run).
    """
    start = time.monotonic()
    last_seq = 0
    waiting_shown: str | None = None
    for agent in connection.watch_agent(name, timeout):
        if agent is None:
            echo(f"Agent {name!r} was deleted", err=True)
            return FAILED
        status = agent.get("status") or {}
        for entry in fmt.new_transitions(status, last_seq):
            echo(fmt.transition_line(entry))
            last_seq = int(entry["seq"])
        waiting = fmt.waiting_reason(status)
        if waiting and waiting != waiting_shown:
            echo(f"          waiting: {waiting}")
        waiting_shown = waiting
        if status.get("phase") in fmt.FINISHED:
            for line in fmt.outcome(agent):
                echo(line)
            return OK if status["phase"] == "Succeeded" else FAILED
        if not status and time.monotonic() - start > OPERATOR_GRACE_SECONDS:
            raise CliError(
                f"Agent {name!r} has no status after {OPERATOR_GRACE_SECONDS:g}s: no operator "
                f"seems to be running (or it does not watch namespace {connection.namespace!r}); "
                "check the stockade Deployment (`kubectl get deploy -A -l "
                "app.kubernetes.io/name=stockade`) and its logs",
                NOT_INSTALLED,
            )
    phase = (connection.get_agent(name).get("status") or {}).get("phase")
    echo(f"timed out after {timeout:g}s; Agent {name!r} is {phase or 'without a phase'}", err=True)
    return TIMEOUT


# --- reading -----------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--attempt", type=click.IntRange(min=1), help="The attempt (default: the last).")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Stream the log as it grows.")
@click.option("--tail", type=int, default=None, help="Lines from the end (default: all).")
@connection_options
@click.pass_context
def logs(
    ctx: click.Context, name: str, attempt: int | None, follow_: bool, tail: int | None
) -> None:
    """Print the log of the Agent's container (the pod <name>-<attempt>).

    Only a pod whose controller ownerReference carries the Agent's UID is read. Exit 1
    when the Agent has no pod (yet), or the node cannot serve logs.
    """
    connection = connect(ctx)
    agent = connection.get_agent(name)
    status = agent.get("status") or {}
    if attempt is not None:
        pod_name = f"{name}-{attempt}"
    elif status.get("podName"):
        pod_name = str(status["podName"])
    elif status.get("attempts"):
        pod_name = f"{name}-{status['attempts']}"
    else:
        raise CliError(
            f"Agent {name!r} has no pod yet (phase {status.get('phase') or '<none>'}"
            + (f"; waiting: {fmt.waiting_reason(status)}" if fmt.waiting_reason(status) else "")
            + ")"
        )
    connection.owned_pod(agent, pod_name)
    out = sys.stdout.buffer
    for chunk in connection.logs(pod_name, follow_, tail):
        out.write(chunk)
        out.flush()


@cli.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@connection_options
@click.pass_context
def result(ctx: click.Context, name: str, output: str) -> None:
    """Print the Agent's reported result (text) or result, phase and usage (-o json).

    Exit 0 whenever the Agent could be read; a note on stderr when it has not
    Succeeded.
    """
    agent = connect(ctx).get_agent(name)
    status = agent.get("status") or {}
    if output == "json":
        echo(fmt.to_json(fmt.result_document(agent)))
    elif status.get("result") is not None:
        echo(str(status["result"]))
    if status.get("phase") != "Succeeded":
        note = f"note: Agent {name!r} is {status.get('phase') or 'without a phase'}"
        if status.get("reason"):
            note += f" ({status['reason']})"
        echo(note, err=True)


@cli.command()
@click.argument("name")
@connection_options
@click.pass_context
def describe(ctx: click.Context, name: str) -> None:
    """Show the Agent: phase, why it waits, conditions, a timeline, its pods per attempt."""
    connection = connect(ctx)
    agent = connection.get_agent(name)
    echo(fmt.describe(agent, connection.owned_pods(agent)))


@cli.command()
@click.option("-A", "--all-namespaces", is_flag=True, help="Sessions of every namespace.")
@connection_options
@click.pass_context
def sessions(ctx: click.Context, all_namespaces: bool) -> None:
    """List AgentSessions: phase, admitted/maxAgents, budget usage, tokens and cost."""
    connection = connect(ctx)
    found = connection.list_sessions(all_namespaces)
    if not found:
        where = "" if all_namespaces else f" in namespace {connection.namespace!r}"
        echo(f"No AgentSessions found{where}.", err=True)
        return
    echo(fmt.session_table(found, all_namespaces))


# --- changing ----------------------------------------------------------------------------


def _set_suspend(ctx: click.Context, name: str, suspend: bool) -> None:
    connection = connect(ctx)
    agent = connection.get_agent(name)
    phase = (agent.get("status") or {}).get("phase")
    verb = "suspended" if suspend else "resumed"
    if bool((agent.get("spec") or {}).get("suspend")) == suspend:
        echo(f"agent.stockade.dev/{name} already {verb}")
        return
    if phase in fmt.FINISHED:
        echo(f"warning: Agent {name!r} has already {phase}; this changes nothing", err=True)
    connection.patch_agent_spec(name, {"suspend": suspend})
    echo(f"agent.stockade.dev/{name} {verb}")


def _suspend_command(verb: str, suspend: bool, help_text: str) -> None:
    """Register ``kubectl stockade <verb> NAME``, which sets ``spec.suspend`` to `suspend`."""

    @cli.command(name=verb, help=help_text)
    @click.argument("name")
    @connection_options
    @click.pass_context
    def command(ctx: click.Context, name: str) -> None:
        _set_suspend(ctx, name, suspend)


_suspend_command(
    "suspend", True, "Pause the Agent (spec.suspend=true): its pod goes, its workspace stays."
)
_suspend_command("resume", False, "Resume a paused Agent (spec.suspend=false): a new pod starts.")


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--timeout", default="30s", show_default=True, help="Most time the command runs.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@connection_options
@click.pass_context
def exec_(ctx: click.Context, name: str, timeout: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in the running Agent's container with your own rights (pods/exec).

    \b
    kubectl stockade exec NAME -- ls /workspace

    Prints the command's stdout and stderr and exits with its exit code; 1 when the
    Agent is not Running or exec is refused, 3 on --timeout.
    """
    check_name(name)
    seconds = fmt.parse_duration(timeout)
    connection = connect(ctx)
    agent = connection.get_agent(name)
    status = agent.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podName"):
        raise CliError(
            f"Agent {name!r} is {status.get('phase') or 'without a phase'}, not Running: "
            "exec needs its container to run"
            + (f" (waiting: {fmt.waiting_reason(status)})" if fmt.waiting_reason(status) else "")
        )
    pod = str(status["podName"])
    connection.owned_pod(agent, pod)
    code = connection.exec(
        pod,
        list(command),
        seconds,
        out=lambda text: _write(sys.stdout, text),
        err=lambda text: _write(sys.stderr, text),
    )
    ctx.exit(code)


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


PROG_NAME = "kubectl stockade"
"""The name the help screens show (kubectl runs the plugin as ``kubectl stockade``)."""

COMPLETE_VAR = "_KUBECTL_STOCKADE_COMPLETE"
"""The environment variable that turns on click's completion of ``kubectl-stockade``
(click would derive it from :data:`PROG_NAME`, space included, which no shell can set)."""


def main() -> None:
    """The console script ``kubectl-stockade``; exits with the codes documented above.

    Shell completion: :mod:`stockade.cli.complete` (its variable, and kubectl's plugin
    protocol).
    """
    cli(prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
