"""Registry loading: defaults, the shipped file, and errors naming alias and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.gateway.registry import (
    DEFAULT_REGISTRY_PATH,
    ModelRegistry,
    RegistryError,
)

SIM = "http://127.0.0.1:9999/v1"
PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def load(models: dict[str, Any], simulator_base_url: str | None = SIM) -> ModelRegistry:
    return ModelRegistry.from_dict({"models": models}, simulator_base_url)


def test_shipped_registry_has_the_simulator_aliases() -> None:
    registry = ModelRegistry.from_file(DEFAULT_REGISTRY_PATH, simulator_base_url=SIM + "/")
    assert registry.aliases == ["cheap", "cheap_b", "embed", "judge", "strong", "writer"]
    expected = {
        "cheap": ("sim-mini", 0.15, 0.60),
        "cheap_b": ("sim-mini-b", 0.15, 0.60),
        "strong": ("sim-large", 3.00, 15.00),
        "writer": ("sim-writer", 0.50, 1.50),
        "judge": ("sim-judge", 1.00, 4.00),
        "embed": ("sim-embed", 0.02, 0.0),
    }
    for alias, (model, price_in, price_out) in expected.items():
        entry = registry.entry(alias)
        assert entry.provider == "simulator"
        assert entry.model == model
        assert entry.base_url == SIM
        assert entry.api_key_env is None
        assert (entry.prices.input_per_mtok, entry.prices.output_per_mtok) == (price_in, price_out)
    assert registry.entry("strong").prices.cached_input_per_mtok == 0.30


def test_shipped_commented_examples_load() -> None:
    """The real-provider examples in chains/models.yaml stay valid when uncommented."""
    text = DEFAULT_REGISTRY_PATH.read_text().split("# ---- examples ----\n", 1)[1]
    lines = [line.replace("  # ", "  ", 1) for line in text.splitlines() if line.strip() != "#"]
    registry = load(yaml.safe_load("\n".join(lines)))
    gpt = registry.entry("gpt4o_mini")
    assert gpt.base_url == "https://api.openai.com/v1"
    assert gpt.api_key_env == "OPENAI_API_KEY"
    assert gpt.prices_source == "genai-prices"
    assert gpt.context_window == 128_000
    claude = registry.entry("claude_sonnet")
    assert claude.base_url == "https://api.anthropic.com/v1"
    assert claude.api_key_env == "ANTHROPIC_API_KEY"
    assert registry.entry("o3_mini").max_tokens_param == "max_completion_tokens"


def test_defaults() -> None:
    entry = load({"a": {"provider": "simulator", "model": "sim-mini", "prices": PRICES}}).entry("a")
    assert entry.timeout_s == 60
    assert entry.heartbeat_timeout_s == 10
    assert entry.connect_timeout_s == 10
    assert entry.base_url == SIM
    fast = load(
        {"a": {"provider": "simulator", "model": "m", "prices": PRICES, "timeout_s": 4}}
    ).entry("a")
    assert fast.connect_timeout_s == 4


def test_describe_exposes_no_url_or_key_name() -> None:
    registry = load(
        {
            "a": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "api_key_env": "MY_KEY",
                "heartbeat_timeout_s": 5,
            }
        }
    )
    info = registry.describe("a")
    dumped = info.model_dump_json()
    assert "MY_KEY" not in dumped and "api.openai.com" not in dumped
    assert info.provider == "openai" and info.model == "gpt-4o-mini"
    assert info.heartbeat_timeout_s == 5
    assert info.prices.input_per_mtok == pytest.approx(0.15)


def test_unknown_alias_names_known_ones() -> None:
    registry = load({"a": {"provider": "simulator", "model": "m", "prices": PRICES}})
    with pytest.raises(KeyError, match=r"unknown model alias 'zz' \(known: a\)"):
        registry.entry("zz")


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            {"bad": {"provider": "azure", "model": "x", "prices": PRICES}},
            r"alias 'bad', field 'provider'",
        ),
        ({"bad": {"provider": "simulator", "prices": PRICES}}, r"alias 'bad', field 'model'"),
        (
            {"bad": {"provider": "simulator", "model": "m", "prices": {"input_per_mtok": -1}}},
            r"alias 'bad', field 'prices.input_per_mtok'",
        ),
        (
            {"bad": {"provider": "simulator", "model": "m", "prices": PRICES, "timeout_s": 0}},
            r"alias 'bad', field 'timeout_s'",
        ),
        (
            {"bad": {"provider": "simulator", "model": "m", "prices": PRICES, "colour": "red"}},
            r"alias 'bad', field 'colour': Extra inputs",
        ),
        (
            {
                "bad": {
                    "provider": "openai",
                    "model": "m",
                    "base_url": "api.x.com",
                    "prices": PRICES,
                }
            },
            r"alias 'bad', field 'base_url'.*http",
        ),
        (
            {"bad": {"provider": "openai", "model": "nope-model", "api_key_env": "K"}},
            r"alias 'bad': no price.*'nope-model'.*genai-prices",
        ),
        (
            {"bad": {"provider": "simulator", "model": "sim-mini"}},
            r"alias 'bad': no price",
        ),
        (
            {"bad": {"provider": "anthropic", "model": "claude-sonnet-4-5"}},
            r"alias 'bad': field 'api_key_env' is required",
        ),
        (
            {"bad alias!": {"provider": "simulator", "model": "m", "prices": PRICES}},
            r"alias 'bad alias!': alias must match",
        ),
    ],
)
def test_invalid_entries_name_alias_and_field(models: dict[str, Any], expected: str) -> None:
    with pytest.raises(RegistryError, match=expected):
        load(models)


def test_key_pasted_as_env_name_is_rejected_without_echo() -> None:
    secret = "sk-live-0123456789abcdef"
    with pytest.raises(RegistryError) as caught:
        load({"a": {"provider": "openai", "model": "gpt-4o-mini", "api_key_env": secret}})
    assert "alias 'a', field 'api_key_env'" in str(caught.value)
    assert "NAME of an environment variable" in str(caught.value)
    assert secret not in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(RegistryError) as caught:
        load(
            {
                "one": {"provider": "simulator", "model": "m"},
                "two": {"provider": "openai", "model": "unknown-x", "api_key_env": "K"},
            }
        )
    assert "alias 'one'" in str(caught.value) and "alias 'two'" in str(caught.value)


def test_simulator_entry_needs_a_url() -> None:
    with pytest.raises(RegistryError, match=r"alias 'a'.*simulator URL"):
        load({"a": {"provider": "simulator", "model": "m", "prices": PRICES}}, None)
    explicit = load(
        {
            "a": {
                "provider": "simulator",
                "model": "m",
                "prices": PRICES,
                "base_url": "http://h/v1/",
            }
        },
        None,
    )
    assert explicit.entry("a").base_url == "http://h/v1"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read model registry"):
        ModelRegistry.from_file(tmp_path / "missing.yaml", SIM)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        ModelRegistry.from_file(bad, SIM)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(RegistryError, match=r"(?s)empty.yaml.*field 'models'"):
        ModelRegistry.from_file(empty, SIM)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("models:\n  a: {provider: simulator, model: m, prices: {input_per_mtok: x}}\n")
    with pytest.raises(
        RegistryError, match=r"(?s)wrong.yaml.*alias 'a', field 'prices.input_per_mtok'"
    ):
        ModelRegistry.from_file(wrong, SIM)
