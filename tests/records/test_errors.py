"""UsageError (threadprobe.records.errors) is what the CLI turns into one line and exit code 2."""

from __future__ import annotations

from threadprobe import cli
from threadprobe.records.errors import UsageError


def test_a_usage_error_anywhere_in_a_command_is_one_line_and_exit_2(monkeypatch, capsys):
    def command(args):
        raise UsageError("no such file: x.json")

    monkeypatch.setitem(cli.COMMANDS, "validate", command)
    assert cli.main(["validate", "x.json"]) == 2
    err = capsys.readouterr().err
    assert err == "threadprobe: error: no such file: x.json\n"


def test_anything_else_is_a_bug_and_is_not_swallowed(monkeypatch):
    def command(args):
        raise KeyError("bug")

    monkeypatch.setitem(cli.COMMANDS, "validate", command)
    try:
        cli.main(["validate", "x.json"])
    except KeyError:
        return
    raise AssertionError("a bug must surface with its traceback")
