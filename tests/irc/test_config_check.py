"""The IRC plug's config as ``immp --check`` sees it: channel sources and number ranges."""

from __future__ import annotations

import pytest
import yaml


def _config(source: str, **irc) -> dict:
    return {
        "plugs": {"net": {"path": "irc", "config": {
            "server": {"host": "127.0.0.1"}, "user": {"nick": "bot"}, **irc}}},
        "channels": {"lobby": {"plug": "net", "source": source}},
    }  # fmt: skip


def _check(tmp_path, immp_command, env, config: dict):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, immp_command("--check", str(path), env=env)


def test_a_source_without_a_channel_prefix_is_a_warning(tmp_path, immp_command, clean_env):
    path, result = _check(tmp_path, immp_command, clean_env, _config("room"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"immp: warning: {path}: channels.lobby.source: 'room' has no channel prefix "
        "(# & + !), so it is a private chat with whoever holds the nick 'room', who would get "
        "every message; for a channel write '#room'\n"
    )
    assert result.stdout.startswith(f"{path}: OK")


@pytest.mark.parametrize("source", ["#room", "&local", "+modeless", "!safe"])
def test_a_channel_source_passes_without_a_warning(source, tmp_path, immp_command, clean_env):
    _, result = _check(tmp_path, immp_command, clean_env, _config(source))
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(
    ("irc", "error"),
    [
        ({"server": {"host": "h", "port": 99999}}, "server.port: must be from 1 to 65535"),
        ({"server": {"host": "h", "port": 0}}, "server.port: must be from 1 to 65535"),
        ({"send-delay": -1}, "send-delay: must be from 0 to 86400"),
        ({"reconnect-max": -5}, "reconnect-max: must be from 0 to 86400"),
        ({"connect-timeout": 0}, "connect-timeout: must be from 0.1 to 86400"),
        ({"queue-size": 0}, "queue-size: must be at least 1"),
        ({"send-burst": 0}, "send-burst: must be from 1 to 1000"),
    ],
)
def test_numbers_out_of_range_are_errors(irc, error, tmp_path, immp_command, clean_env):
    path, result = _check(tmp_path, immp_command, clean_env, _config("#room", **irc))
    assert result.returncode == 2
    assert result.stderr.startswith(f"immp: error: {path}: plugs.net.config.{error}, got ")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("#e1,0", "has a comma"),  # JOIN #e1,0 would join #e1 and 0 ("part all" on some servers)
        ("#a b", "has a space"),
        ("#bell\x07", "has a control character"),
        ("#nul\x00", "has a control character"),
        ("#cr\r", "has a control character"),
        ("#lf\nJOIN #x", "has a control character"),
        ("nick,other", "has a comma"),  # a nick (private chat) is checked the same way
        (":x", "starts with a colon"),
        ("", "is empty"),
    ],
)
def test_a_source_that_is_no_irc_name_is_a_one_line_error(
    source, problem, tmp_path, immp_command, clean_env
):
    config = _config("#ok")
    config["channels"]["evil1"] = {"plug": "net", "source": source}
    path, result = _check(tmp_path, immp_command, clean_env, config)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"immp: error: {path}: channels.evil1.source: expected an IRC channel name or nick (no "
        f"commas, spaces or control characters): {source!r} {problem}\n"
    )
