"""compose.yaml and deploy/compose/: every file and variable they name exists, no secret is
written in them, pgkeep accepts their settings, and what they set up works for real: the
postgres service's init script, run against a throwaway server, makes the role pgkeep is
documented to run as, and pgkeep with the compose file's environment backs up and proves
a restore through it. (No container engine runs on the test machines.)"""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgkeep.config import Settings, load_settings
from pgkeep.postgres.privileges import SETUP_SQL
from pgkeep.postgres.process import child_env
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.deploy.conftest import ROOT

COMPOSE = ROOT / "compose.yaml"
S3 = ROOT / "deploy" / "compose" / "s3.yaml"
EXAMPLE_ENV = ROOT / "deploy" / "compose" / "example.env"
INIT_SCRIPT = ROOT / "deploy" / "compose" / "initdb" / "10-pgkeep.sh"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN|DATABASE_URL")
# ${NAME}, ${NAME:?message}, ${NAME:-default}; $$ is a literal dollar.
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _files() -> list[Path]:
    return [COMPOSE, S3]


def _services() -> Iterator[tuple[Path, str, dict[str, Any]]]:
    for path in _files():
        for name, service in _load(path)["services"].items():
            yield path, name, service


def _example_env() -> dict[str, str]:
    lines = (line for line in EXAMPLE_ENV.read_text().splitlines() if line.strip())
    return dict(line.split("=", 1) for line in lines if not line.startswith("#"))


def _interpolated(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return values[match[1]]

    return _VARIABLE.sub(one, text).replace("$$", "$")


def test_compose_names_only_files_that_exist() -> None:
    for path, name, service in _services():
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for env_file in service.get("env_file", []):
            assert (ROOT / env_file).is_file(), f"{path.name}: {name}: {env_file}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{path.name}: {name}: {source}"
    scripts = list((ROOT / "deploy" / "compose" / "initdb").iterdir())
    assert scripts == [INIT_SCRIPT]
    assert INIT_SCRIPT.stat().st_mode & stat.S_IXUSR  # the postgres image runs it, not sources it


def test_compose_variables_are_the_example_env_file() -> None:
    """Every ${NAME} is required (`:?`, so compose stops naming it) and listed, empty, in
    example.env; example.env lists nothing else."""
    used: set[str] = set()
    for path in _files():
        for name, form, _message in _VARIABLE.findall(path.read_text()):
            assert form == ":?", f"{path.name}: ${{{name}}} must be required (:?)"
            used.add(name)
    example = _example_env()
    assert set(example) == used
    assert set(example.values()) == {""}


def test_compose_writes_no_secret() -> None:
    for path, name, service in _services():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert _VARIABLE.search(str(value)), f"{path.name}: {name}: {key} is inline"
                assert not re.search(r"://[^/:@]+:[^$][^@]*@", str(value)), f"{name}: {key}"
    for env_file in (ROOT / "deploy" / "compose" / "pgkeep.env",):
        names = [line.split("=")[0] for line in env_file.read_text().splitlines() if "=" in line]
        assert not [n for n in names if SECRET_NAME.search(n)], env_file
    toml = (ROOT / "deploy" / "compose" / "pgkeep.toml").read_text()
    assert not re.search(r"(?m)^\s*\w*(secret|key|password|url)\w*\s*=", toml)


def _pgkeep_env(values: dict[str, str], *extra: Path) -> dict[str, str]:
    """The pgkeep service's environment as compose gives it (env_file, then environment)."""
    env: dict[str, str] = {}
    for path in (COMPOSE, *extra):
        service = _load(path)["services"]["pgkeep"]
        for env_file in service.get("env_file", []):
            lines = (ROOT / env_file).read_text().splitlines()
            env |= dict(line.split("=", 1) for line in lines if line and line[0] != "#")
        environment = service.get("environment", {})
        env |= {k: _interpolated(str(v), values) for k, v in environment.items()}
    return env


def _secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(48) for name in _example_env()}


@pytest.mark.parametrize("extra", [[], [S3]], ids=["volume", "s3"])
def test_pgkeep_accepts_the_compose_settings(
    extra: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _pgkeep_env(_secrets(), *extra)
    unknown = {k for k in env if k.startswith("PGKEEP_")} - {
        f"PGKEEP_{name.upper()}" for name in Settings.model_fields
    }
    assert not unknown
    env["PGKEEP_CONFIG"] = str(ROOT / "deploy" / "compose" / "pgkeep.toml")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(backup_dir=Path("/nonexistent/backups"))
    assert settings.default_compression == "zstd"  # from the mounted TOML file
    assert settings.schedule == "0 3 * * *"


def test_compose_mounts_match_the_image() -> None:
    service = _load(COMPOSE)["services"]["pgkeep"]
    containerfile = re.sub(r"\\\n", " ", (ROOT / "Containerfile").read_text())
    volumes = re.search(r"^VOLUME (\[.*\])", containerfile, re.MULTILINE)
    assert volumes
    targets = {v.split(":")[1] for v in service["volumes"]}
    assert set(yaml.safe_load(volumes[1])) <= targets
    assert service["environment"]["PGKEEP_CONFIG"] in targets
    assert service["ports"] == ["127.0.0.1:8000:8000"]
    assert "PGKEEP_PORT=8000" in containerfile
    grace = float(_pgkeep_env(_secrets())["PGKEEP_SHUTDOWN_GRACE_SECONDS"])
    assert float(service["stop_grace_period"].rstrip("s")) >= grace + 10


def test_init_script_makes_the_documented_role() -> None:
    documented = SETUP_SQL.format(role="pgkeep", password=":'pgkeep_password'", owners="shop_owner")
    assert documented in INIT_SCRIPT.read_text()


@pytest.fixture(scope="module")
def compose_server(pg_bin_dirs: dict[int, Path]) -> Iterator[ThrowawayCluster]:
    """The postgres service: a fresh server that ran the init script, as the image runs it."""
    major = 15 if 15 in pg_bin_dirs else max(pg_bin_dirs)  # compose.yaml runs postgres:15
    with ThrowawayCluster(pg_bin_dirs[major]) as server:
        yield server


def test_compose_services_back_up_and_restore_as_the_documented_role(
    compose_server: ThrowawayCluster, tmp_path: Path
) -> None:
    values = _secrets()
    server = compose_server
    init = child_env() | {
        "PATH": f"{server.bin_dir}:{os.environ['PATH']}",
        "POSTGRES_USER": "postgres",
        "PGKEEP_DB_PASSWORD": values["PGKEEP_DB_PASSWORD"],
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGPASSWORD": server.password,
    }
    subprocess.run(["sh", str(INIT_SCRIPT)], env=init, check=True, capture_output=True)
    server.execute("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)", "shop")
    server.execute("ALTER TABLE items OWNER TO shop_owner", "shop")
    env = _pgkeep_env(values)
    env["PGKEEP_DATABASE_URL"] = env["PGKEEP_DATABASE_URL"].replace(
        "@postgres:5432/", f"@127.0.0.1:{server.port}/"
    )
    env |= {
        "PGKEEP_CONFIG": str(ROOT / "deploy" / "compose" / "pgkeep.toml"),
        "PGKEEP_BACKUP_DIR": str(tmp_path / "backups"),
        "PGKEEP_PG_BIN_DIR": str(server.bin_dir),
    }
    created = _pgkeep(env, "backup", "create")
    name = created.stdout.split("\t")[0]
    verified = _pgkeep(env, "backup", "verify", "--restore", name)
    assert name.endswith(".sql.zst")
    assert "restore: restored into" in verified.stdout
    assert verified.stdout.rstrip().endswith("\nverified")


def _pgkeep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pgkeep", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
