"""The loadgen YAML config and the --scenario syntax reject bad input with the offending key named."""
import pytest

from loadgen.config import ConfigError, LoadgenConfig, load_config, parse_scenario


def write(tmp_path, text):
    path = tmp_path / "loadgen.yaml"
    path.write_text(text)
    return path


def test_shipped_config_loads():
    cfg = load_config("config/loadgen.yaml")
    assert cfg.target.url == "http://127.0.0.1:8000"
    assert cfg.mix.search > 0 and cfg.scenarios == []


def test_valid_config_with_scenarios(tmp_path):
    cfg = load_config(write(tmp_path, """
rate: {requests_per_second: 20, day_length_s: 600}
scenarios:
  - {name: degraded-canary, start_s: 10, duration_s: 30, canary_weight: 40}
"""))
    assert cfg.rate.requests_per_second == 20.0 and cfg.rate.day_length_s == 600.0
    assert cfg.scenarios[0].name == "degraded-canary" and cfg.scenarios[0].canary_weight == 40


@pytest.mark.parametrize("text, key", [
    ("rate: {requests_per_secnd: 3}", "rate.requests_per_secnd"),
    ("rate: {requests_per_second: fast}", "rate.requests_per_second"),
    ("shopper: {users: 1.5}", "shopper.users"),
    ("shopper: {users: true}", "shopper.users"),
    ("mix: [1, 2]", "mix"),
    ("scenarios: [{name: meltdown}]", "scenarios[0].name"),
    ("scenarios: [{name: surge, surge_factor: 0.5}]", "scenarios[0].surge_factor"),
    ("rate: {daily_amplitude: 1.5}", "rate.daily_amplitude"),
    ("shopper: {patience: 2}", "shopper.patience"),
    ("target: {url: localhost:8000}", "target.url"),
    ("listen: 9500", "listen"),
    ("bogus: 1", "bogus"),
])
def test_bad_keys_are_named(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert str(err.value).startswith(key), str(err.value)


def test_invalid_yaml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "rate: [unclosed"))


def test_scenario_cli_syntax():
    sc = parse_scenario("error-burst@30+90,error_rate=0.8,version=2")
    assert (sc.name, sc.start_s, sc.duration_s, sc.error_rate, sc.version) == ("error-burst", 30.0, 90.0, 0.8, "2")
    assert parse_scenario("surge").start_s == 0.0
    assert parse_scenario("latency-spike+20s").duration_s == 20.0
    assert parse_scenario("query-drift+600,drift_share=0.5").drift_share == 0.5


@pytest.mark.parametrize("spec", ["boom", "surge@x", "surge,factor=3", "surge,surge_factor", "surge,surge_factor=x",
                                  "query-drift,drift_share=1"])
def test_bad_scenario_specs(spec):
    with pytest.raises(ConfigError):
        parse_scenario(spec)


def test_defaults_validate():
    assert load_config(None) == LoadgenConfig()


def test_cli_flags_are_validated_with_the_file(tmp_path):
    from loadgen.__main__ import apply_cli, build_parser

    cfg = load_config(write(tmp_path, "rate: {requests_per_second: 2}"))
    args = build_parser().parse_args(["--rate", "7", "--users", "5", "--scenario", "surge@1+2"])
    applied = apply_cli(cfg, args)
    assert (applied.rate.requests_per_second, applied.shopper.users) == (7.0, 5)
    assert [sc.name for sc in applied.scenarios] == ["surge"]
    with pytest.raises(ConfigError) as err:
        apply_cli(cfg, build_parser().parse_args(["--users", "0"]))
    assert str(err.value).startswith("shopper.users: ")


def test_cli_exits_2_naming_the_key(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "loadgen", "--config", str(write(tmp_path, "shopper: {users: x}"))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "config error: shopper.users: Input should be a valid integer, got 'x'" in proc.stderr
