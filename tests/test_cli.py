"""The CLI runs the same core without HTTP; errors are one stderr line and an exit code."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from pgkeep.cli import main
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET, SIGNING_KEY, backup_files


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> Path:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", database)
    monkeypatch.setenv("PGKEEP_JWT_SECRET", SECRET)
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(backup_dir))
    monkeypatch.setenv("PGKEEP_PG_BIN_DIR", str(cluster.bin_dir))
    return backup_dir


def test_cli_token_prints_a_verifiable_owner_token(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--sub", "ops", "--role", "OWNER", "--ttl", "1h"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == ("ops", "OWNER")
    assert 3590 <= claims["exp"] - claims["iat"] <= 3600


def test_cli_backup_create_list_delete(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "create"]) == 0
    name = capsys.readouterr().out.split("\t")[0]
    assert (env / name).stat().st_size > 0
    assert main(["backup", "list"]) == 0
    assert capsys.readouterr().out.startswith(name + "\t")
    assert main(["backup", "delete", name]) == 0
    assert capsys.readouterr().out == f"deleted {name} from primary\n"
    assert backup_files(env) == [f"{name}.deleted"]  # its signed tombstone, and nothing else


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["backup", "delete", "backup-2001-01-01T00-00-00.sql"], 3, "not found"),
        (["backup", "delete", "../etc/passwd"], 2, "invalid backup name"),
        (["token", "--sub", "x", "--ttl", "forever"], 2, "invalid ttl"),
    ],
)
def test_cli_errors_are_one_line_and_an_exit_code(
    env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("pgkeep: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_bad_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PGKEEP_JWT_SECRET", "short")
    assert main(["token", "--sub", "x"]) == 2
    assert capsys.readouterr().err.startswith("pgkeep: error: PGKEEP_JWT_SECRET: must be at least")


def test_cli_create_verify_restore(
    env: Path, capsys: pytest.CaptureFixture[str], cluster: ThrowawayCluster
) -> None:
    assert main(["backup", "create", "--format", "plain", "--compression", "zstd"]) == 0
    name = capsys.readouterr().out.split("\t")[0]
    assert name.endswith(".sql.zst")
    assert main(["backup", "verify", name, "--restore"]) == 0
    out = capsys.readouterr().out
    assert "ok   restore: restored into" in out
    assert out.endswith("verified\n")
    try:
        assert main(["backup", "restore", name, "--target-database", "cli_copy"]) == 0
        assert "public.purchase\t5000 rows" in capsys.readouterr().out
        assert main(["backup", "restore", name, "--target-database", "cli_copy"]) == 4
        assert "already exists" in capsys.readouterr().err
    finally:
        cluster.execute("DROP DATABASE IF EXISTS cli_copy WITH (FORCE)")
    (env / name).write_bytes((env / name).read_bytes()[:100])
    assert main(["backup", "verify", name]) == 6
    assert "FAIL sha256" in capsys.readouterr().out


def test_cli_create_prints_progress_lines_when_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    slow_database: str,
    backup_dir: Path,
    cluster: ThrowawayCluster,
) -> None:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", slow_database)
    monkeypatch.setenv("PGKEEP_SIGNING_KEY", SIGNING_KEY)  # a CLI-only setup: no JWT at all
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(backup_dir))
    monkeypatch.setenv("PGKEEP_PG_BIN_DIR", str(cluster.bin_dir))
    assert main(["backup", "create", "--compression", "gzip", "--level", "9"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 3
    sizes = [float(line.split()[1]) for line in lines]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]
    assert lines[-1].endswith(", done")
    assert "1/1 tables" in lines[-1]


def test_cli_create_draws_a_bar_on_a_terminal(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    env = {
        **os.environ,
        "PGKEEP_DATABASE_URL": database,
        "PGKEEP_SIGNING_KEY": SIGNING_KEY,
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(cluster.bin_dir),
        "COLUMNS": "120",
    }
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgkeep", "backup", "create"],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(leader, 65536):
            output += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = output.decode("utf-8", "replace")
    assert "━" in text  # rich's bar
    assert "progress: " not in text
    assert ".sql\t" in text
    # Log lines are printed above the bar, each on a line of its own, never drawn over it.
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
    logged = [line for line in plain.splitlines() if "backup started target=" in line]
    assert logged
    assert all("━" not in line and line.lstrip()[:4].isdigit() for line in logged), logged


def test_cli_targets_and_target_option(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database: str,
    tmp_path: Path,
    cluster: ThrowawayCluster,
) -> None:
    config = tmp_path / "pgkeep.toml"
    config.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\n'
        f'[targets.shop]\ndatabase_url = "{database}"\n'
        f'[targets.crm]\ndatabase_url = "{database}"\nschedule = "0 3 * * *"\n'
    )
    monkeypatch.setenv("PGKEEP_CONFIG", str(config))
    assert main(["backup", "list"]) == 2
    assert "several targets" in capsys.readouterr().err
    assert main(["backup", "--target", "crm", "create"]) == 0
    name = capsys.readouterr().out.split("\t")[0]
    assert (tmp_path / "store" / "crm" / name).exists()
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("target\tkind")
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["crm"][4] == "1"
    assert rows["crm"][6] == "0 3 * * *"
    assert rows["shop"][4] == "0"
