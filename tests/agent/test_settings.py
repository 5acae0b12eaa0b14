"""Settings: defaults < file (JSON or INI) < PILOTWMS_* < command line, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotwms.agent.settings import AgentSettings, SettingsError, load_settings, redacted


def test_precedence_file_env_arguments(tmp_path: Path) -> None:
    config = tmp_path / "pilot.json"
    config.write_text('{"site": "FILE", "queue": "fq", "wait_term": 5, "tags": ["a", "b"]}')
    env = {"PILOTWMS_QUEUE": "eq", "PILOTWMS_TOKEN": "t", "PILOTWMS_CORES": "3"}
    settings, args = load_settings(
        ["--config", str(config), "--server", "https://wms", "--wait-term", "7"], env
    )
    assert (settings.site, settings.queue, settings.wait_term) == ("FILE", "eq", 7.0)
    assert settings.tags == ["a", "b"] and settings.cores == 3 and settings.token == "t"
    assert not args.describe
    settings.validate()


def test_ini_file_and_lists(tmp_path: Path) -> None:
    config = tmp_path / "pilot.ini"
    config.write_text(
        "[pilot]\nserver = http://h:8000\ntoken = x\nvos = dteam, atlas\ninsecure = yes\n"
    )
    settings, _ = load_settings([], {"PILOTWMS_CONFIG": str(config)})
    assert settings.vos == ["dteam", "atlas"] and settings.insecure is True
    settings.validate()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--server"),
        (["--server", "wms.example.org", "--token", "t"], "http(s) URL"),
        (["--server", "http://h"], "--token"),
        (["--server", "http://h", "--token", "t", "--cores", "-1"], "cores"),
        (["--server", "http://h", "--token", "t", "--ca-file", "/nonexistent"], "ca-file"),
    ],
)
def test_invalid_settings_name_the_problem(argv: list[str], message: str) -> None:
    settings, _ = load_settings(argv, {})
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.validate()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{bad json", "invalid JSON"), ('{"colour": 1}', "unknown setting"), ("[x]\na=1", "[pilot]")],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "c"
    config.write_text(content)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(["--config", str(config)], {})


def test_numbers_are_checked_and_the_token_is_redacted() -> None:
    with pytest.raises(SettingsError, match="wait_term"):
        load_settings(["--wait-term", "soon"], {})
    assert redacted(AgentSettings(token="secret"))["token"] == "***"
