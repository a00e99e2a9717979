"""Settings of the wrong kind are one line each at start, never a traceback (issue 22.13);
a TOML integer is a number; an API key no HTTP request can carry is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_fixtures import make_app, notifications, pilot_test, wait_for
from tui.config import Settings, load_settings, resolve_paths

ROOT = Path(__file__).resolve().parents[1]


def _settings(tmp_path: Path, text: str) -> tuple[Settings, list[str]]:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.toml").write_text(text)
    return load_settings(resolve_paths(str(tmp_path / "data"), str(tmp_path / "config")))


@pytest.mark.parametrize(("line", "why"), [
    ("model = 5", "model should be text in quotes, got 5"),
    ("n_ctx = 0", "n_ctx should be 1 or more"),
    ("n_ctx = 1.5", "n_ctx should be a whole number"),
    ("max_tokens = true", "max_tokens should be a number"),
    ("temperature = nan", "temperature should be a number"),
    ("serve_port = 99999", "serve_port should be a port from 1 to 65535"),
    ("model_dirs = \"~/models\"", "model_dirs should be a list of folders"),
    ("offline = 1", "offline should be true or false"),
    ("keymap = 3", "keymap should be a table"),
])
def test_a_setting_of_the_wrong_kind_is_one_line(tmp_path: Path, line: str, why: str) -> None:
    settings, problems = _settings(tmp_path, line + "\n")
    assert len(problems) == 1 and why in problems[0] and "ignored" in problems[0], problems
    assert settings == Settings()  # the default instead


def test_a_toml_integer_is_a_temperature(tmp_path: Path) -> None:
    settings, problems = _settings(tmp_path, "temperature = 1\n")
    assert problems == [] and settings.temperature == 1.0
    assert isinstance(settings.temperature, float)


def test_model_5_in_config_does_not_stop_ask(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("model = 5\n")
    env = {**os.environ, "LMDESK_CONFIG_DIR": str(tmp_path / "config"),
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "tui.cli", "ask", "--max-tokens", "2", "Hi"],
                            capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "model should be text in quotes, got 5; ignored" in result.stderr


@pilot_test
async def test_an_api_key_no_header_can_carry_is_refused(tmp_path: Path) -> None:
    from tests.test_app_endpoints import open_endpoints
    from tui.models.endpoints import EndpointError, EndpointLibrary

    app = make_app(tmp_path)
    async with app.run_test(size=(130, 40)) as pilot:
        screen = await open_endpoints(pilot)
        with pytest.raises(EndpointError, match="plain ASCII"):
            screen.add_endpoint("lab", "http://127.0.0.1:9/v1", "ключ-123")
        screen._added({"name": "lab", "url": "http://127.0.0.1:9/v1", "api_key": "sk é"})
        await wait_for(pilot, lambda: any("plain ASCII" in m for _s, m in notifications(app)))
        assert EndpointLibrary(app.store).list() == []


def test_flash_attention_is_on_unless_config_turns_it_off(tmp_path: Path,
                                                          smollm: Path) -> None:
    from tui.engine.local import LocalEngine
    from tui.session.params import load_params

    assert load_params(Settings(), str(smollm)).flash_attn is True
    settings, problems = _settings(tmp_path, "flash_attention = false\n")
    assert problems == [] and settings.flash_attention is False
    params = load_params(settings, str(smollm))
    assert params.flash_attn is False
    engine = LocalEngine(params)  # the worker loads the model as asked
    try:
        assert engine.load().flash_attn is False
    finally:
        engine.unload()
    _, problems = _settings(tmp_path, "flash_attention = \"no\"\n")
    assert len(problems) == 1 and "flash_attention should be true or false" in problems[0]
