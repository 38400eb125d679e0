"""The config file in-process: precedence flag > env > file > default, errors naming the
file and the key or line, `tfbulk config` telling where each setting came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tfbulk.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TFBULK_* from outside, and an XDG folder of the test's own."""
    for name in [n for n in os.environ if n.startswith("TFBULK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def tfbulk(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def used_dest(err: str) -> str:
    """`status` names the state DB it looked for: which --dest won."""
    return err.split("no state DB at ", 1)[1].split("/.tfbulk", 1)[0]


def test_flag_beats_env_beats_file_beats_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write(tmp_path / "c.toml", f'dest = "{tmp_path}/from-file"\n')
    assert used_dest(tfbulk(capsys, "status")[2]) == "downloads"
    assert (
        used_dest(tfbulk(capsys, "--config", str(config), "status")[2]) == f"{tmp_path}/from-file"
    )
    monkeypatch.setenv("TFBULK_DEST", f"{tmp_path}/from-env")
    assert used_dest(tfbulk(capsys, "--config", str(config), "status")[2]) == f"{tmp_path}/from-env"
    code, _, err = tfbulk(capsys, "--config", config, "status", "--dest", f"{tmp_path}/flag")
    assert code == 2
    assert used_dest(err) == f"{tmp_path}/flag"


def test_tfbulk_config_env_and_xdg_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = write(
        tmp_path / "xdg" / "tfbulk" / "config.toml",
        'concurrency = 4\nretries = 7\n[status]\ndest = "/only/status"\n',
    )
    monkeypatch.setenv("TFBULK_RETRIES", "9")
    code, out, _ = tfbulk(capsys, "config", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["config_file"] == str(default)
    settings = data["settings"]
    assert settings["concurrency"] == {"value": 4, "source": "config", "from": str(default)}
    assert settings["retries"] == {"value": "9", "source": "env", "from": "TFBULK_RETRIES"}
    assert settings["dest"] == {"value": "downloads", "source": "default", "from": None}
    status = json.loads(tfbulk(capsys, "config", "status", "--json")[1])["settings"]
    assert status["dest"]["value"] == "/only/status"


def test_tfbulk_config_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write(tmp_path / "c.toml", 'ping_url = "https://hc-ping.com/0f1e2d3c-uuid"\n')
    monkeypatch.setenv("TFBULK_STATE", "postgresql://tfbulk:hunter2@db.example/tfbulk")
    code, out, _ = tfbulk(capsys, "--config", str(config), "config")
    assert code == 0
    assert "0f1e2d3c" not in out and "hunter2" not in out
    assert "ping_url" in out and "https://hc-ping.com/" in out
    assert "(config " in out and "(env TFBULK_STATE)" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurency = 4\n", "unknown key 'concurency'"),
        ("[run]\nnot_a_flag = 1\n", "unknown key '[run] not_a_flag'"),
        ("dest = \n", "not valid TOML: Invalid value (at line 1"),
        ('retries = "many"\n', "retries = 'many'"),
    ],
)
def test_bad_config_is_exit_2_naming_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path / "bad.toml", text)
    code, _, err = tfbulk(capsys, "--config", str(config), "status")
    assert code == 2
    assert err.count("\n") == 1
    assert f"config {config}: " in err and expected in err


def test_missing_config_named_by_env_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TFBULK_CONFIG", str(tmp_path / "none.toml"))
    code, _, err = tfbulk(capsys, "status")
    assert code == 2
    assert "none.toml" in err and "TFBULK_CONFIG" in err
