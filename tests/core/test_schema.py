"""Config schemas: defaults are filled in, errors name the exact key path."""

import pytest

from immp import Any_, ConfigError, Nullable, Number, Optional, Positive, Ref, Schema

SPEC = Schema({
    "channels": {str: [Ref("channel")]},
    Optional("name-format", None): Nullable(str),
    Optional("joins", True): bool,
    Optional("interval", 10): Number,
    Optional("mode", "a"): ("a", "b"),
    Optional("server", {}): {
        Optional("port", 6667): int,
        Optional("password", None): Nullable(str),
    },
})  # fmt: skip


def test_defaults_are_filled_in_including_nested_mappings():
    out = SPEC.validate({"channels": {}})
    assert out == {
        "channels": {},
        "name-format": None,
        "joins": True,
        "interval": 10,
        "mode": "a",
        "server": {"port": 6667, "password": None},
    }


def test_an_omitted_optional_key_stays_out_and_is_still_checked_when_given():
    overrides = Schema({str: {Optional("joins", omit=True): bool}})
    assert overrides.validate({"irc": {}, "demo": {"joins": False}}) == {
        "irc": {},
        "demo": {"joins": False},
    }
    with pytest.raises(ConfigError) as caught:
        overrides.validate({"irc": {"joins": "no"}}, "plugs")
    assert caught.value.path == "plugs.irc.joins"


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"channels": {"main": ["a", "lobby"]}}, "channels.main[1]", "no channel named 'lobby'"),
        ({"channels": {"main": "a"}}, "channels.main", "expected a list, got 'a' (str)"),
        ({}, None, "missing required key 'channels'"),
        ({"channels": {}, "joins": "yes"}, "joins", "expected true or false, got 'yes'"),
        ({"channels": {}, "interval": True}, "interval", "expected a number, got True"),
        ({"channels": {}, "mode": "c"}, "mode", "expected one of 'a', 'b', got 'c'"),
        ({"channels": {}, "typo": 1}, "typo", "unknown key 'typo' (known keys: channels,"),
        ({"channels": {}, "server": {"port": "x"}}, "server.port", "expected an integer"),
    ],
)
def test_errors_name_the_key_path(value, path, message):
    with pytest.raises(ConfigError) as info:
        SPEC.validate(value, refs={"channel": {"a"}})
    assert info.value.path == path
    assert message in info.value.message


def test_secret_values_never_appear_in_errors():
    with pytest.raises(ConfigError) as info:
        SPEC.validate({"channels": {}, "server": {"password": 123456789}})
    assert "123456789" not in str(info.value)
    assert "value hidden" in str(info.value)


def test_any_of_several_shapes():
    schema = Schema(Any_([str], str, describe="a list of folders"))
    assert schema.validate("x") == "x"
    with pytest.raises(ConfigError, match="expected a list of folders, got 5"):
        schema.validate(5)


def test_error_string_is_one_line_with_file_and_path():
    err = ConfigError("no channel named 'lobby'", "hooks.sync.config.channels.main[1]", "demo.yaml")
    assert str(err) == "demo.yaml: hooks.sync.config.channels.main[1]: no channel named 'lobby'"


def test_positive_numbers_and_whole_numbers():
    spec = Schema({"size": Positive(int), Optional("every", None): Nullable(Positive())})
    assert spec.validate({"size": 3, "every": 0.5}) == {"size": 3, "every": 0.5}
    for value, what in ((0, "must be positive"), (-2, "must be positive"),
                        (1.5, "expected an integer"), (True, "expected an integer")):  # fmt: skip
        with pytest.raises(ConfigError, match=what) as caught:
            spec.validate({"size": value})
        assert caught.value.path == "size"
