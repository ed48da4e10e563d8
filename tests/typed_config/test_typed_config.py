"""The shared config layer: strict sections, dotted-key errors, cross-field rules, env overlay, YAML files."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import pytest
from pydantic import Field, model_validator

from typed_config import (
    ConfigError,
    Section,
    apply_env_overrides,
    dotted_key,
    invalid,
    load_yaml_mapping,
    parse_section,
    require_positive,
)


class Endpoint(Section):
    host: str
    port: Annotated[int, Field(ge=0, le=65535)] = 80


class Settings(Section):
    enabled: bool = True
    workers: int = 2
    ratio: float = 0.5
    name: str = "x"
    anything: Any = None
    limit: Optional[int] = None
    either: Union[int, str] = 0
    mode: Literal["fast", "safe"] = "safe"
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, float] = Field(default_factory=dict)
    primary: Optional[Endpoint] = None
    replicas: list[Endpoint] = Field(default_factory=list)


def build(data: Any, path: str = "app") -> Settings:
    return parse_section(Settings, data, path)


def error(data: Any, path: str = "app") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(data, path)
    return info.value


def test_valid_values_of_every_type_are_kept():
    cfg = build({
        "enabled": False, "workers": 4, "ratio": 2, "name": "n", "anything": [1, {"a": None}], "limit": 3,
        "either": "s", "mode": "fast", "tags": ["a", "b"], "labels": {"k": 1},
        "primary": {"host": "h"}, "replicas": [{"host": "r", "port": 81}],
    })
    assert (cfg.enabled, cfg.workers, cfg.name, cfg.limit, cfg.either, cfg.mode) == (False, 4, "n", 3, "s", "fast")
    assert cfg.ratio == 2.0 and cfg.labels == {"k": 1.0}
    assert cfg.anything == [1, {"a": None}] and cfg.tags == ["a", "b"]
    assert cfg.primary == Endpoint(host="h", port=80) and cfg.replicas == [Endpoint(host="r", port=81)]


def test_a_missing_or_null_section_means_defaults():
    assert build(None) == Settings() == build({})
    assert build({"limit": None, "primary": None}) == Settings()
    assert parse_section(Outer, {"windows": [None]}, "").windows == [Window()]


@pytest.mark.parametrize("data, key, fragment", [
    ({"enabled": "yes"}, "app.enabled", "valid boolean, got 'yes'"),
    ({"enabled": 1}, "app.enabled", "valid boolean, got 1"),
    ({"workers": "2"}, "app.workers", "valid integer, got '2'"),
    ({"workers": True}, "app.workers", "valid integer, got True"),
    ({"workers": 2.5}, "app.workers", "valid integer, got 2.5"),
    ({"ratio": "half"}, "app.ratio", "valid number, got 'half'"),
    ({"name": 3}, "app.name", "valid string, got 3"),
    ({"limit": "3"}, "app.limit", "valid integer, got '3'"),
    ({"mode": "slow"}, "app.mode", "'fast' or 'safe', got 'slow'"),
    ({"tags": "a"}, "app.tags", "valid list, got 'a'"),
    ({"tags": ["a", 2]}, "app.tags[1]", "valid string, got 2"),
    ({"labels": ["k"]}, "app.labels", "expected a mapping, got list"),
    ({"labels": {"k": "v"}}, "app.labels.k", "valid number, got 'v'"),
    ({"labels": {1: 1.0}}, "app.labels.1", "valid string, got 1"),
    ({"primary": "h:80"}, "app.primary", "expected a mapping, got str"),
    ({"replicas": [{"host": "a"}, {"host": "b", "port": -1}]}, "app.replicas[1].port", "greater than or equal to 0"),
])
def test_an_ill_typed_value_names_its_dotted_key(data, key, fragment):
    err = error(data)
    assert err.key == key and fragment in err.message
    assert str(err) == f"{key}: {err.message}"
    assert isinstance(err, ValueError)


def test_unknown_keys_are_named_with_the_known_ones():
    err = error({"replicas": [{"host": "a"}, {"host": "b", "prot": 1}]})
    assert err.key == "app.replicas[1].prot"
    assert err.message == "unknown key (known keys: host, port)"
    assert error({"wokers": 1}, path="").key == "wokers"
    assert error({"primary": {"host": "h", "hots": 1}}).message == "unknown key (known keys: host, port)"


def test_a_missing_required_key_is_named():
    err = error({"replicas": [{"port": 1}]})
    assert (err.key, err.message) == ("app.replicas[0].host", "required key is missing")


def test_a_non_mapping_document_is_rejected_at_the_root():
    err = error(["a"], path="")
    assert (err.key, str(err)) == ("", "expected a mapping, got list")


class Window(Section):
    low: int = 0
    high: int = 1
    sizes: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.low > self.high:
            raise invalid("low", "must not exceed high")
        for i, size in enumerate(self.sizes):
            if size > self.high:
                raise invalid(("sizes", i), f"must not exceed high ({self.high})")
        require_positive(high=self.high)
        return self


class Outer(Section):
    windows: list[Window] = Field(default_factory=list)


def test_cross_field_rules_blame_the_key_inside_the_section():
    with pytest.raises(ConfigError) as info:
        parse_section(Outer, {"windows": [{}, {"low": 5}]}, "outer")
    assert str(info.value) == "outer.windows[1].low: must not exceed high"
    with pytest.raises(ConfigError) as info:
        parse_section(Window, {"high": 3, "sizes": [1, 4]}, "window")
    assert str(info.value) == "window.sizes[1]: must not exceed high (3)"


def test_require_positive_names_the_value_and_its_bound():
    with pytest.raises(ConfigError) as info:
        parse_section(Window, {"low": -2, "high": 0}, "w")
    assert str(info.value) == "w.high: expected >= 1, got 0"
    require_positive(a=1, b=0.5, c=None)


def test_sections_stay_valid_after_assignment():
    cfg = build({})
    cfg.workers = 3
    with pytest.raises(ValueError):
        cfg.workers = "many"


def test_dotted_key_formats_lists_and_drops_key_markers():
    assert dotted_key(("items", 2, "title")) == "items[2].title"
    assert dotted_key(("weights", "1", "[key]"), "traffic") == "traffic.weights.1"
    assert dotted_key((), "app") == "app"


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
    assert cfg.primary == Endpoint(host="db") and cfg.either == "@not-yaml"


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
