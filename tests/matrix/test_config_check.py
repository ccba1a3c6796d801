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


def _check_ids(tmp_path, immp_command, env, user, source):
    config = {
        "plugs": {
            "hs": {
                "path": "matrix",
                "config": {"homeserver": "https://matrix.example.org", "token": "t", "user": user},
            }
        },
        "channels": {"room": {"plug": "hs", "source": source}},
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, immp_command("--check", str(path), env=env)


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        ("bridge", "does not start with @"),
        ("bridge:example.org", "does not start with @"),
        ("@bridge", "has no :server"),
        ("@bridge:", "has no :server"),
        ("@:example.org", "has nothing between @ and :server"),
        ("@bri dge:example.org", "has a space or a control character"),
        ("@bridge:example.org\n", "has a space or a control character"),
    ],
)
def test_a_user_that_is_no_matrix_id_is_a_one_line_error(
    user, problem, tmp_path, immp_command, clean_env
):
    path, result = _check_ids(tmp_path, immp_command, clean_env, user, "!room:localhost")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"immp: error: {path}: plugs.hs.config.user: expected a Matrix user ID "
        f"(@localpart:server): {user!r} {problem}\n"
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("room", "starts with neither ! (a room ID) nor # (an alias)"),
        ("@alice:localhost", "starts with neither ! (a room ID) nor # (an alias)"),
        ("#room", "has no :server"),
        ("#:localhost", "has nothing between # and :server"),
        ("!", "has nothing between ! and :server"),
        ("#a room:localhost", "has a space or a control character"),
    ],
)
def test_a_source_that_is_no_room_is_a_one_line_error(
    source, problem, tmp_path, immp_command, clean_env
):
    path, result = _check_ids(tmp_path, immp_command, clean_env, "@bot:localhost", source)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"immp: error: {path}: channels.room.source: expected a Matrix room ID (!id:server) or "
        f"alias (#room:server): {source!r} {problem}\n"
    )


@pytest.mark.parametrize("source", ["!room:localhost", "!opaqueRoomV12Id", "#room:example.org"])
def test_room_ids_and_aliases_pass(source, tmp_path, immp_command, clean_env):
    path, result = _check_ids(tmp_path, immp_command, clean_env, "@bot:localhost", source)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK")
