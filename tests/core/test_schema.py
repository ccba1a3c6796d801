"""Config schemas: defaults are filled in, errors name the exact key path."""

import pytest

from immp import (
    Any_,
    Check,
    ConfigError,
    ConfigWarning,
    Nullable,
    Number,
    Optional,
    Positive,
    Range,
    Ref,
    Required,
    Schema,
    Warn,
)

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


def test_documented_keys_validate_like_plain_ones():
    spec = Schema({
        Required("host", doc="the server"): str,
        Optional("port", 6667, doc="its port"): Range(int, 1, 65535),
    })  # fmt: skip
    assert spec.validate({"host": "h"}) == {"host": "h", "port": 6667}
    assert [k.doc for k in spec.spec] == ["the server", "its port"]
    with pytest.raises(ConfigError, match="missing required key 'host'"):
        spec.validate({})


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (Range(int, 1, 65535), 99999, "must be from 1 to 65535, got 99999 (int)"),
        (Range(int, 1, 65535), 0, "must be from 1 to 65535, got 0 (int)"),
        (Range(Number, 0), -5, "must be at least 0, got -5 (int)"),
        (Range(Number, None, 10), 10.5, "must be at most 10, got 10.5 (float)"),
        (Range(int, 1, 65535), "x", "expected an integer, got 'x' (str)"),
    ],
)
def test_numbers_out_of_range_are_errors(spec, value, message):
    with pytest.raises(ConfigError) as caught:
        Schema({"n": spec}).validate({"n": value})
    assert caught.value.path == "n"
    assert caught.value.message == message


def test_range_bounds_are_included():
    schema = Schema(Range(int, 1, 65535))
    assert schema.validate(1) == 1
    assert schema.validate(65535) == 65535
    assert Schema(Range(Number, 0)).validate(0) == 0


def test_a_warning_keeps_the_value_and_goes_to_the_sink():
    spec = Schema({"source": Warn(str, lambda s: None if s.startswith("#") else "no prefix")})
    seen = []
    assert spec.validate({"source": "room"}, "channels.a", warn=seen.append) == {"source": "room"}
    assert [str(w) for w in seen] == ["channels.a.source: no prefix"]
    assert isinstance(seen[0], ConfigWarning)
    spec.validate({"source": "#room"}, warn=seen.append)
    assert len(seen) == 1
    with pytest.raises(ConfigError, match="expected a string"):
        spec.validate({"source": 5}, warn=seen.append)


def test_a_warning_without_a_sink_is_logged(caplog):
    spec = Schema(Warn(int, lambda n: "odd" if n % 2 else None))
    with caplog.at_level("WARNING", logger="immp.config"):
        spec.validate(3, "n")
    assert [r.getMessage() for r in caplog.records] == ["n: odd"]


def test_a_check_that_fails_on_the_values_shape_does_not_show_python():
    spec = Schema({"prefix": Check(lambda v: [p.strip() for p in v], "a list of prefixes")})
    with pytest.raises(ConfigError) as caught:
        spec.validate({"prefix": 5})
    assert caught.value.message == "expected a list of prefixes, got 5 (int)"
    assert "object" not in caught.value.message


def test_a_missing_key_names_the_typo_that_was_given_instead():
    spec = Schema({"server": {"host": str}, Optional("nick", "x"): str})
    with pytest.raises(ConfigError) as caught:
        spec.validate({"sever": {"host": "h"}})
    assert caught.value.message == (
        "missing required key 'server' (unknown key 'sever' given: did you mean 'server'?)"
    )
    with pytest.raises(ConfigError) as caught:
        spec.validate({"server": {"host": "h"}, "nik": "y"})
    assert caught.value.message == "unknown key 'nik' (did you mean 'nick'?)"
    assert caught.value.path == "nik"


def test_extra_keys_are_kept_only_at_the_top_and_near_misses_are_errors():
    spec = Schema({Optional("plugs", {}): {Optional("enabled", True): bool}}, extra=True)
    assert spec.validate({"mine": 1}) == {"plugs": {"enabled": True}, "mine": 1}
    with pytest.raises(ConfigError, match=r"unknown key 'plug' \(did you mean 'plugs'\?\)"):
        spec.validate({"plug": {}})
    with pytest.raises(ConfigError) as caught:
        spec.validate({"plugs": {"enable": False}})
    assert caught.value.path == "plugs.enable"
    assert "did you mean 'enabled'?" in caught.value.message


def test_a_reference_typo_names_the_near_match():
    with pytest.raises(ConfigError, match=r"no channel named 'loby' \(did you mean 'lobby'\?\)"):
        Schema([Ref("channel")]).validate(["loby"], refs={"channel": {"lobby", "other"}})
