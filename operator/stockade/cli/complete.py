"""Shell completion for ``kubectl stockade``: kubectl's plugin protocol and click's own.

kubectl (1.26 and later) completes a plugin's arguments by running an executable called
``kubectl_complete-<plugin>`` found on ``PATH`` (kubernetes/kubernetes#105867; KEP 2379,
"Shell Completion Support"): it passes the words after the plugin name, the last one
being the word under completion (``""`` when a new word starts), and reads cobra's
``__complete`` format back: one candidate per line (``value<TAB>description``), then a
line ``:<directive>``. The console script ``kubectl_complete-stockade`` (:func:`main`)
answers that from the click command tree, so ``kubectl stockade <TAB>`` works in every
shell kubectl completes.

Without kubectl, click's completion is the standard one: the variable
:data:`stockade.cli.commands.COMPLETE_VAR`, e.g.
``eval "$(_KUBECTL_STOCKADE_COMPLETE=bash_source kubectl-stockade)"``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from click.shell_completion import ShellComplete

from stockade.cli.commands import COMPLETE_VAR, PROG_NAME, cli

NO_FILE_COMPLETION = 4
"""cobra's ``ShellCompDirectiveNoFileComp``: the shell offers no file names instead."""


def candidates(words: Sequence[str]) -> list[str]:
    """The completions of ``kubectl stockade WORDS``, in cobra's line format.

    Args:
        words: the words after ``stockade``; the last one is the word being completed
            (empty: a new word). No words at all completes an empty word.

    Returns:
        ``value`` or ``value<TAB>help`` lines (commands and options, from click), then
        ``:4`` (no file completion).

    """
    args, incomplete = list(words[:-1]), (words[-1] if words else "")
    completer = ShellComplete(cli, {}, PROG_NAME, COMPLETE_VAR)
    lines = []
    for item in completer.get_completions(args, incomplete):
        value = item.value.replace("\t", " ").replace("\n", " ")
        helptext = " ".join((item.help or "").split())
        lines.append(f"{value}\t{helptext}" if helptext else value)
    return [*lines, f":{NO_FILE_COMPLETION}"]


def main() -> None:
    """The console script ``kubectl_complete-stockade`` (kubectl's plugin completion)."""
    sys.stdout.write("".join(line + "\n" for line in candidates(sys.argv[1:])))
