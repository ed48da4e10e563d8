"""The shared config validator: every type, unknown/missing keys, nested paths, hooks, env, YAML files."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest

from typed_config import (
    ConfigError,
    apply_env_overrides,
    build_dataclass,
    join_key,
    load_yaml_mapping,
    require_positive,
)


@dataclass
class Endpoint:
    host: str
    port: int = 80

    def validate(self, path: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(join_key(path, "port"), f"expected 0..65535, got {self.port}")


@dataclass
class Settings:
    enabled: bool = True
    workers: int = 2
    ratio: float = 0.5
    name: str = "x"
    anything: Any = None
    limit: Optional[int] = None
    either: Union[int, str] = 0
    mode: Literal["fast", "safe"] = "safe"
    tags: list[str] = field(default_factory=list)
    pair: tuple[int, str] = (0, "")
    sizes: tuple[int, ...] = ()
    labels: dict[str, float] = field(default_factory=dict)
    primary: Optional[Endpoint] = None
    replicas: list[Endpoint] = field(default_factory=list)


def build(data: Any, path: str = "app") -> Settings:
    return build_dataclass(Settings, data, path)


def error(data: Any, path: str = "app") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(data, path)
    return info.value


def test_valid_values_of_every_type_are_kept_and_converted():
    cfg = build({
        "enabled": False, "workers": 4, "ratio": 2, "name": "n", "anything": [1, {"a": None}], "limit": 3,
        "either": "s", "mode": "fast", "tags": ["a", "b"], "pair": [1, "b"], "sizes": [1, 2, 3],
        "labels": {"k": 1}, "primary": {"host": "h"}, "replicas": [{"host": "r", "port": 81}],
    })
    assert (cfg.enabled, cfg.workers, cfg.name, cfg.limit, cfg.either, cfg.mode) == (False, 4, "n", 3, "s", "fast")
    assert cfg.ratio == 2.0 and isinstance(cfg.ratio, float)
    assert cfg.labels == {"k": 1.0} and isinstance(cfg.labels["k"], float)
    assert cfg.anything == [1, {"a": None}] and cfg.tags == ["a", "b"]
    assert cfg.pair == (1, "b") and cfg.sizes == (1, 2, 3)
    assert cfg.primary == Endpoint("h", 80) and cfg.replicas == [Endpoint("r", 81)]


def test_a_missing_or_null_section_means_defaults():
    assert build(None) == Settings() == build({})
    assert build({"limit": None, "primary": None}) == Settings()


@pytest.mark.parametrize("data, key, message", [
    ({"enabled": "yes"}, "app.enabled", "expected bool, got 'yes'"),
    ({"enabled": 1}, "app.enabled", "expected bool, got 1"),
    ({"workers": "2"}, "app.workers", "expected int, got '2'"),
    ({"workers": True}, "app.workers", "expected int, got True"),
    ({"workers": 2.5}, "app.workers", "expected int, got 2.5"),
    ({"ratio": "half"}, "app.ratio", "expected a number, got 'half'"),
    ({"ratio": False}, "app.ratio", "expected a number, got False"),
    ({"name": 3}, "app.name", "expected str, got 3"),
    ({"limit": "3"}, "app.limit", "expected int, got '3'"),
    ({"either": 1.5}, "app.either", "expected int | str, got 1.5"),
    ({"mode": "slow"}, "app.mode", "expected one of 'fast', 'safe', got 'slow'"),
    ({"tags": "a"}, "app.tags", "expected list[str], got 'a'"),
    ({"tags": ["a", 2]}, "app.tags[1]", "expected str, got 2"),
    ({"pair": [1]}, "app.pair", "expected tuple[int, str] (2 items), got [1]"),
    ({"sizes": [1, "2"]}, "app.sizes[1]", "expected int, got '2'"),
    ({"labels": ["k"]}, "app.labels", "expected dict[str, float], got ['k']"),
    ({"labels": {"k": "v"}}, "app.labels.k", "expected a number, got 'v'"),
    ({"labels": {1: 1.0}}, "app.labels.1", "expected str, got 1"),
    ({"primary": "h:80"}, "app.primary", "expected a mapping, got str"),
])
def test_an_ill_typed_value_names_its_dotted_key(data, key, message):
    err = error(data)
    assert (err.key, err.message) == (key, message)
    assert str(err) == f"{key}: {message}"
    assert isinstance(err, ValueError)


def test_unknown_keys_are_named_with_the_known_ones():
    err = error({"replicas": [{"host": "a"}, {"host": "b", "prot": 1}]})
    assert err.key == "app.replicas[1].prot"
    assert err.message == "unknown key (known keys: host, port)"
    assert error({"wokers": 1}, path="").key == "wokers"


def test_a_missing_required_key_is_named():
    err = error({"replicas": [{"port": 1}]})
    assert (err.key, err.message) == ("app.replicas[0].host", "required key is missing")


def test_a_non_mapping_document_is_rejected_at_the_root():
    err = error(["a"], path="")
    assert (err.key, str(err)) == ("", "expected a mapping, got list")


def test_the_validate_hook_runs_with_the_dotted_path_of_the_section():
    assert error({"primary": {"host": "h", "port": 70000}}).key == "app.primary.port"
    assert error({"replicas": [{"host": "a"}, {"host": "b", "port": -1}]}).key == "app.replicas[1].port"


def test_constructor_errors_become_config_errors_of_the_section():
    @dataclass
    class Window:
        low: int = 0
        high: int = 1

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low must not exceed high")

    with pytest.raises(ConfigError) as info:
        build_dataclass(Window, {"low": 5}, "window")
    assert str(info.value) == "window: low must not exceed high"


def test_require_positive_names_the_first_bad_value_and_its_bound():
    require_positive("s", a=1, b=0.5, c=None)
    with pytest.raises(ConfigError) as info:
        require_positive("s", a=1, b=0, c=-1.0)
    assert str(info.value) == "s.b: expected >= 1, got 0"
    with pytest.raises(ConfigError) as info:
        require_positive("", c=0.0)
    assert str(info.value) == "c: expected > 0, got 0.0"


def test_env_overrides_are_parsed_as_yaml_and_nest_by_double_underscore():
    data = {"app": {"workers": 1}}
    env = {
        "MYAPP__APP__WORKERS": "8",
        "MYAPP__APP__ENABLED": "false",
        "myapp__app__ratio": "0.25",                   # the prefix and keys are case-insensitive
        "MYAPP__APP__PRIMARY__HOST": "db",             # creates the nested mapping
        "MYAPP__APP__TAGS": "[a, b]",
        "MYAPP__APP__NAME": "'007'",                   # quoted: stays a string
        "MYAPP__APP__EITHER": "@not-yaml",             # not valid YAML: kept as the raw string
        "OTHER__APP__WORKERS": "9",
    }
    assert apply_env_overrides(data, "MYAPP", env) is data
    cfg = build(data["app"])
    assert (cfg.workers, cfg.enabled, cfg.ratio, cfg.tags, cfg.name) == (8, False, 0.25, ["a", "b"], "007")
    assert cfg.primary == Endpoint("db") and cfg.either == "@not-yaml"


def test_env_override_errors_name_the_key():
    data = apply_env_overrides({}, "MYAPP", {"MYAPP__APP__WORKERS": "many"})
    with pytest.raises(ConfigError) as info:
        build(data["app"])
    assert info.value.key == "app.workers"
    with pytest.raises(ConfigError) as info:
        apply_env_overrides({}, "MYAPP", {"MYAPP__APP____WORKERS": "1"})
    assert info.value.key == "MYAPP__APP____WORKERS" and "malformed" in info.value.message
    with pytest.raises(ConfigError) as info:
        apply_env_overrides({"app": {"name": "x"}}, "MYAPP", {"MYAPP__APP__NAME__FIRST": "y"})
    assert info.value.key == "app.name"


def test_yaml_files_load_as_mappings(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("app:\n  workers: 3\n")
    assert load_yaml_mapping(good) == {"app": {"workers": 3}}
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_yaml_mapping(empty) == {}


@pytest.mark.parametrize("name, text, message", [
    ("absent.yaml", None, "cannot read config file"),
    ("bad.yaml", "app: [unclosed", "invalid YAML"),
    ("list.yaml", "- a\n- b\n", "expected a mapping at the top level, got list"),
])
def test_yaml_file_errors_are_config_errors(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_mapping(path)
    assert message in str(info.value) and name in str(info.value)
