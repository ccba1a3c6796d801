"""The Matrix plug's config as ``immp --check`` sees it (no server needed)."""

from __future__ import annotations

import pytest
import yaml


def _check(tmp_path, immp_command, env, **matrix):
    config = {
        "plugs": {"hs": {"path": "matrix", "config": {"user": "@bot:localhost", **matrix}}},
        "channels": {"room": {"plug": "hs", "source": "!room:localhost"}},
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, immp_command("--check", str(path), env=env)


@pytest.mark.parametrize("homeserver", ["127.0.0.1:45063", "localhost:8008", "ftp://hs.example"])
def test_homeserver_without_http_scheme_is_an_error(homeserver, tmp_path, immp_command, clean_env):
    path, result = _check(
        tmp_path, immp_command, clean_env, homeserver=homeserver, password="secret"
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"immp: error: {path}: plugs.hs.config.homeserver: must be an http:// or https:// URL, "
        f"e.g. https://matrix.example.org, got {homeserver!r}\n"
    )


@pytest.mark.parametrize("secrets", [{}, {"password": "secret", "token": "t0ken"}])
def test_exactly_one_of_password_and_token_named_once(secrets, tmp_path, immp_command, clean_env):
    path, result = _check(
        tmp_path, immp_command, clean_env, homeserver="http://127.0.0.1:8008", **secrets
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"immp: error: {path}: plugs.hs.config: give exactly one of password and token\n"
    )
    assert "secret" not in result.stderr and "t0ken" not in result.stderr


def test_a_good_config_passes(tmp_path, immp_command, clean_env):
    path, result = _check(
        tmp_path, immp_command, clean_env, homeserver="https://matrix.example.org", token="t"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK")
