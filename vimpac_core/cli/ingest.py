"""`vimpac` commands of this group (being written; see the issue tracker)."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `vimpac` parser."""
