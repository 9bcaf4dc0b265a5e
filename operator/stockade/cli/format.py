"""Pure formatting for ``kubectl stockade``: no I/O, no API calls.

Objects are the plain dicts the Kubernetes API returns (camelCase keys). Styled text
uses :func:`click.style`; :func:`click.echo` strips the colours when stdout is not a
terminal, so these functions never need to know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from stockade.cli.errors import USAGE, CliError

PHASE_COLOURS = {
    "Succeeded": "green",
    "Running": "cyan",
    "Failed": "red",
    "Paused": "yellow",
    "Pending": "yellow",
    "Starting": "blue",
    "Terminating": "magenta",
    "Active": "cyan",
    "Suspended": "yellow",
}
FINISHED = frozenset({"Succeeded", "Failed"})

# What click.style writes: SGR (colour/bold/underline/reverse) with these parameters only;
# never 8 (conceal), which could hide text. Any other escape sequence is shown escaped.
_STYLE_SGR = re.compile(r"\x1b\[(?:(?:[0-79]|[1-9][0-79]|10[0-7])(?:;|(?=m)))*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _control_text(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\x1b":
        return "^["  # as kubectl's printers.EscapeTerminal shows ESC
    if char == "\r":
        return "\\r"  # as kubectl shows CR, so it cannot overwrite the line
    if char < " ":
        return "^" + chr(ord(char) + 64)  # caret notation: ^G for BEL
    if char == "\x7f":
        return "^?"
    return f"\\x{ord(char):02x}"  # C1 (e.g. \x9b, a one-byte CSI) as its hex escape


def terminal_safe(text: str) -> str:
    r"""``text`` with every control character but tab and newline shown as visible text.

    Agent-controlled strings (results, messages, reasons, transition history, pod
    states) reach the terminal through :func:`stockade.cli.commands.echo`, which passes
    everything through here: ESC becomes ``^[`` and CR ``\r`` (as kubectl's
    ``printers.EscapeTerminal``), other C0 characters and DEL caret notation (``^G``),
    C1 characters (``\x9b`` is a one-byte CSI) their ``\x..`` escape. So OSC (window
    titles, hyperlinks), CSI (cursor moves, screen clears) and CR overwrites are printed,
    never obeyed. Only the colour sequences :func:`click.style` writes survive (SGR with
    colour, bold, dim, underline, blink, reverse parameters; never conceal).
    """
    out: list[str] = []
    last = 0
    for match in _STYLE_SGR.finditer(text):
        out.append(_CONTROL.sub(_control_text, text[last : match.start()]))
        out.append(match.group())
        last = match.end()
    out.append(_CONTROL.sub(_control_text, text[last:]))
    return "".join(out)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration: ``30s``, ``10m``, ``1h30m``, ``500ms``; ``90`` is 90 s.

    Raises :class:`CliError` (exit code 2) for anything else, or a non-positive value.
    """
    value = text.strip()
    seconds: float | None = None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif value and _DURATION_PART.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    if seconds is None or seconds <= 0:
        raise CliError(f"invalid duration {text!r}: use e.g. 30s, 10m, 1h30m", USAGE)
    return seconds


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["k=v", "a=b=c"]`` -> ``{"k": "v", "a": "b=c"}``; later keys win.

    Raises :class:`CliError` (exit code 2) naming ``flag`` when an item has no ``=`` or
    an empty key.
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} takes KEY=VALUE, got {item!r}", USAGE)
        pairs[key] = value
    return pairs


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``2025-01-31T12:00:00Z``) as an aware datetime, else None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: str | None, now: datetime | None = None) -> str:
    """A timestamp's age as kubectl shows it: ``42s``, ``5m``, ``3h``, ``2d``; ``<unknown>``."""
    then = parse_time(value)
    if then is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def phase(name: str | None) -> str:
    """A phase name, coloured by kind (green Succeeded, red Failed, ...); ``<none>`` if unset."""
    if not name:
        return "<none>"
    colour = PHASE_COLOURS.get(name)
    return click.style(name, fg=colour, bold=name in FINISHED) if colour else name


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """kubectl-style columns: upper-case headers, left-aligned, three spaces apart.

    Widths ignore ANSI colour codes; the last column is not padded. No trailing newline.
    """
    all_rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(click.unstyle(r[i])) for r in all_rows) for i in range(len(headers))]
    lines = []
    for row in all_rows:
        cells = [
            cell + " " * (widths[i] - len(click.unstyle(cell))) if i < len(row) - 1 else cell
            for i, cell in enumerate(row)
        ]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def usage_text(usage: Mapping[str, Any] | None) -> str:
    """``inputTokens=1200 outputTokens=300 costUSD=0.02`` (known keys first); ``-`` if none."""
    if not usage:
        return "-"
    known = ["inputTokens", "outputTokens", "costUSD"]
    keys = [k for k in known if k in usage] + sorted(k for k in usage if k not in known)
    return " ".join(f"{k}={_number(usage[k])}" for k in keys)


def tokens(usage: Mapping[str, Any] | None) -> str:
    """Input plus output tokens of a usage object, or ``-``."""
    if not usage or not ({"inputTokens", "outputTokens"} & set(usage)):
        return "-"
    return str(int(usage.get("inputTokens", 0)) + int(usage.get("outputTokens", 0)))


def cost(usage: Mapping[str, Any] | None) -> str:
    """``$0.02`` from a usage object's costUSD, or ``-``."""
    if not usage or "costUSD" not in usage:
        return "-"
    return f"${_number(float(usage['costUSD']))}"


def transition_line(entry: Mapping[str, Any]) -> str:
    """One ``status.history`` entry as a progress line.

    ``12:00:03  Starting -> Running  PodRunning: the pod runs on node-1``.
    """
    when = parse_time(entry.get("time"))
    clock = when.strftime("%H:%M:%S") if when else "--:--:--"
    source = entry.get("from")
    arrow = f"{phase(source)} -> {phase(entry.get('to'))}" if source else phase(entry.get("to"))
    reason = entry.get("reason") or ""
    message = entry.get("message") or ""
    detail = f"{reason}: {message}" if reason and message else reason or message
    return f"{clock}  {arrow}  {detail}".rstrip()


def new_transitions(status: Mapping[str, Any] | None, after_seq: int) -> list[dict[str, Any]]:
    """History entries of ``status`` with ``seq`` greater than ``after_seq``, oldest first."""
    history = (status or {}).get("history") or []
    return sorted((h for h in history if int(h.get("seq", 0)) > after_seq), key=lambda h: h["seq"])


def condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition of type ``type_`` in ``status`` (``{}`` when absent)."""
    for item in (status or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def waiting_reason(status: Mapping[str, Any] | None) -> str | None:
    """Why a Pending Agent waits: ``SessionFull: ...`` when ``Admitted`` is False, else None."""
    admitted = condition(status, "Admitted")
    if (status or {}).get("phase") not in (None, "Pending") or admitted.get("status") != "False":
        return None
    reason, message = admitted.get("reason", ""), admitted.get("message", "")
    return f"{reason}: {message}" if message else reason


def outcome(agent: Mapping[str, Any]) -> list[str]:
    """The lines ``run --wait`` prints at the end: the phase (reason, exit code), result, usage.

    ``["Succeeded", "result: patched 3 files", "usage: inputTokens=1200 costUSD=0.02"]``
    """
    status = agent.get("status") or {}
    head = phase(status.get("phase"))
    details = [status[k] for k in ("reason",) if status.get(k)]
    if status.get("exitCode") is not None:
        details.append(f"exit code {status['exitCode']}")
    if status.get("attempts"):
        details.append(f"{status['attempts']} attempt(s)")
    lines = [f"{head} ({', '.join(details)})" if details else head]
    if status.get("phase") == "Failed" and status.get("message"):
        lines.append(f"message: {status['message']}")
    if status.get("result"):
        lines.append(f"result: {status['result']}")
    lines.append(f"usage: {usage_text(status.get('usage'))}")
    return lines


def result_document(agent: Mapping[str, Any]) -> dict[str, Any]:
    """What ``result -o json`` prints: name, namespace, phase, reason, exitCode, result, usage."""
    status = agent.get("status") or {}
    metadata = agent.get("metadata") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "exitCode": status.get("exitCode"),
        "result": status.get("result"),
        "usage": status.get("usage") or {},
    }


def to_json(document: Any) -> str:
    """Indented JSON with sorted keys (a stable shape for scripts)."""
    return json.dumps(document, indent=2, sort_keys=True)


def pod_rows(pods: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[list[str]]:
    """Rows ATTEMPT, POD, PHASE, NODE, EXIT, AGE for the Agent's pods, by attempt."""

    def attempt(pod: Mapping[str, Any]) -> int:
        label = ((pod.get("metadata") or {}).get("labels") or {}).get("stockade.dev/attempt")
        return int(label) if label and label.isdigit() else 0

    rows = []
    for pod in sorted(pods, key=attempt):
        metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
        exit_code = "-"
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if container.get("name") == "agent" and terminated:
                exit_code = str(terminated.get("exitCode"))
        pod_phase = status.get("phase") or "<unknown>"
        if metadata.get("deletionTimestamp"):
            pod_phase += " (terminating)"
        rows.append(
            [
                str(attempt(pod) or "?"),
                str(metadata.get("name")),
                pod_phase,
                str((pod.get("spec") or {}).get("nodeName") or "-"),
                exit_code,
                age(metadata.get("creationTimestamp"), now),
            ]
        )
    return rows


def describe(
    agent: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> str:
    """The ``describe`` text: phase, why it waits, result, conditions, timeline, pods."""
    metadata = agent.get("metadata") or {}
    spec = agent.get("spec") or {}
    status = agent.get("status") or {}
    lines = [
        f"Name:        {metadata.get('name')}",
        f"Namespace:   {metadata.get('namespace')}",
        f"Created:     {metadata.get('creationTimestamp')} ({age(metadata.get('creationTimestamp'), now)} ago)",  # noqa: E501
        f"Image:       {spec.get('image') or '<from session>'}",
    ]
    if spec.get("sessionRef"):
        lines.append(f"Session:     {spec['sessionRef'].get('name')}")
    if spec.get("suspend"):
        lines.append("Suspend:     true")
    if not status:
        lines.append(
            "Phase:       <none>  (no status yet: the operator has not seen this Agent;"
            " is it running?)"
        )
        return "\n".join(lines)
    reason = f"  ({status['reason']})" if status.get("reason") else ""
    lines.append(f"Phase:       {phase(status.get('phase'))}{reason}")
    if status.get("message"):
        lines.append(f"Message:     {status['message']}")
    waiting = waiting_reason(status)
    if waiting:
        lines.append(f"Waiting:     {waiting}")
    for label, key in (
        ("Runtime", "runtimeClassName"),
        ("Pod", "podName"),
        ("Node", "nodeName"),
        ("Attempts", "attempts"),
        ("Exit code", "exitCode"),
        ("Started", "startTime"),
        ("Completed", "completionTime"),
        ("Result", "result"),
    ):
        if status.get(key) is not None:
            lines.append(f"{label + ':':<13}{status[key]}")
    if status.get("usage"):
        lines.append(f"Usage:       {usage_text(status['usage'])}")
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["", "Conditions:"]
        rows = [
            [c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")]
            for c in conditions
        ]
        lines += [
            "  " + line for line in table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows).split("\n")
        ]
    history = new_transitions(status, 0)
    if history:
        lines += ["", "Timeline:"]
        lines += ["  " + transition_line(entry) for entry in history]
    lines += ["", "Pods:"]
    if pods:
        headers = ["ATTEMPT", "POD", "PHASE", "NODE", "EXIT", "AGE"]
        lines += ["  " + line for line in table(headers, pod_rows(pods, now)).split("\n")]
    else:
        lines.append("  <none>")
    return "\n".join(lines)


def session_table(
    sessions: Iterable[Mapping[str, Any]], all_namespaces: bool, now: datetime | None = None
) -> str:
    """The ``sessions`` table.

    Columns: [NAMESPACE,] NAME, PHASE, ADMITTED (admitted/maxAgents), AGENTS (total),
    BUDGET (the session's usage against its budget), TOKENS, COST (members' summed
    reported usage), AGE.
    """
    headers = ["NAME", "PHASE", "ADMITTED", "AGENTS", "BUDGET", "TOKENS", "COST", "AGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for session in sessions:
        metadata = session.get("metadata") or {}
        spec, status = session.get("spec") or {}, session.get("status") or {}
        max_agents = spec.get("maxAgents", 8)
        row = [
            str(metadata.get("name")),
            phase(status.get("phase")),
            f"{status.get('admitted', 0)}/{max_agents}",
            str((status.get("agents") or {}).get("total", 0)),
            status.get("usageSummary") or "-",
            tokens(status.get("agentUsage")),
            cost(status.get("agentUsage")),
            age(metadata.get("creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, str(metadata.get("namespace")))
        rows.append(row)
    return table(headers, rows)
