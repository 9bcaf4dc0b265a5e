"""Stockade's performance harness (``make bench``; ``python -m bench --help``)."""
