"""The command line's dispatch table names every subcommand the parser offers."""

from __future__ import annotations

import argparse

from remediator import cli


def test_every_subcommand_has_a_runner() -> None:
    parser = cli._parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    # control-plane parses its own options (the simulator's): main hands them over.
    assert set(commands.choices) == {*cli._RUNNERS, "control-plane"}
