"""``examples/demo.yaml``: the demo the README's first command (``hatch run demo``) runs."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

from .console import Console

DEMO = ROOT / "examples" / "demo.yaml"


def test_the_demo_config_checks_clean(immp_command):
    result = immp_command("--check", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{DEMO}: OK (2 plugs, 2 channels, 0 groups, 2 hooks)"


@pytest.mark.slow
def test_the_demo_bridges_typed_lines_answers_help_and_shows_the_timer(immp_exe, clean_env):
    demo = Console(immp_exe, DEMO, clean_env)
    try:
        demo.type("hello")
        demo.expect("[timer] <you (lobby)> hello")
        demo.type("!help")
        help_text = demo.expect("Send !help NAME for details of one.")
        assert "  !help [name] - List the commands you can run here, or show how to use one." in (
            help_text
        )
        # The timer network posts every 5 seconds; the bridge copies it into the console.
        demo.expect("<timer-bot (square)> Hello from the timer network")
        assert demo.stop() == 0
    finally:
        demo.kill()
