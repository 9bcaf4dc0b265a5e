"""``python -m stockade.cli``: the same as the ``kubectl-stockade`` console script."""

from stockade.cli.commands import main

if __name__ == "__main__":
    main()
