"""Many targets in one service: a configuration file, discovery on a real server, globals,
the dump limit, per-target isolation, and `?target=` on every route."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import scheduling, targets, wiring
from pgkeep.cli import main
from pgkeep.config import Settings, load_settings
from pgkeep.core.jobs import JobKind
from pgkeep.errors import ConfigError, InvalidInput
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET, plant_backup

DATABASES = [f"mt_{i:02d}" for i in range(20)]
LIMIT = 3


@pytest.fixture(scope="module")
def many(cluster: ThrowawayCluster) -> Iterator[list[str]]:
    """Twenty small databases on the session's server, each with a table and a row."""
    for name in DATABASES:
        cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cluster.create_database(name)
        cluster.execute("CREATE TABLE t (i int); INSERT INTO t VALUES (1)", name)
    yield DATABASES
    for name in [*DATABASES, "mt_20", "mt two"]:
        cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _config(
    tmp_path: Path,
    cluster: ThrowawayCluster,
    database: str,
    include: str = '["mt_*"]',
    exclude: str = '["mt_1?"]',
) -> Path:
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f"""
jwt_secret = "{SECRET}"
backup_dir = "{tmp_path / "store"}"
pg_bin_dir = "{cluster.bin_dir}"
max_concurrent_dumps = {LIMIT}
retention_days = 0

[targets.shop]
database_url = "{database}"
retention_keep_last = 1

[targets.crm]
database_url = "{database}"
prefix = "crm-folder"

[servers.main]
url = "{cluster.url()}"
include = {include}
exclude = {exclude}
globals = true
schedule = "0 4 * * *"
"""
    )
    return path


def _pg_dumps_now() -> int:
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"pg_dump") and any(b"dbname=mt_" in a for a in argv):
            count += 1
    return count


class Watch:
    """Samples how many pg_dump processes run at once, until stopped."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _pg_dumps_now())
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_configuration_file_targets_discovery_globals_and_the_dump_limit(
    many: list[str],
    cluster: ThrowawayCluster,
    database: str,
    tmp_path: Path,
) -> None:
    settings = load_settings(config=_config(tmp_path, cluster, database))
    runtime = wiring.build(settings)
    assert sorted(runtime.services) == ["crm", "main", "shop"]  # nothing found before start
    runtime.start()
    found = sorted(n for n in runtime.services if n.startswith("main.mt_"))
    assert found == [f"main.{d}" for d in many if not d.startswith("mt_1")]  # exclude mt_1?
    assert runtime.specs["main"].kind == "globals"
    cluster.execute("DROP ROLE IF EXISTS pgkeep_test_role; CREATE ROLE pgkeep_test_role")
    cluster.create_database("mt_20")  # created after start: the next slot finds it
    schedule = next(s for s in runtime.scheduler.schedules if s.kind == "backup")  # type: ignore[union-attr]
    watch = Watch()
    slot = datetime(2031, 1, 1, 4, 0, tzinfo=UTC)
    assert schedule.tick(slot + timedelta(seconds=1)) == slot
    peak = watch.stop()
    assert 1 < peak <= LIMIT, peak
    assert "main.mt_20" in runtime.services
    for name in [*found, "main.mt_20"]:
        [backup] = runtime.services[name].catalog.list()
        assert backup.signed
        assert (tmp_path / "store" / name / backup.name).exists()
    [globals_backup] = runtime.services["main"].catalog.list()
    text = (tmp_path / "store" / "main" / globals_backup.name).read_text()
    assert "CREATE ROLE pgkeep_test_role;" in text
    assert globals_backup.manifest is not None
    assert globals_backup.manifest.kind == "globals"
    assert str(globals_backup.manifest.restrict_key) in text
    verify = runtime.services["main"].proving.verify(
        globals_backup.name, restore=False, actor=ACTOR
    )
    assert verify.verified, verify.checks
    with pytest.raises(InvalidInput, match="restored by hand"):
        runtime.services["main"].proving.check_restore(
            globals_backup.name, "x", replace=False, confirm=None
        )
    assert runtime.services["shop"].catalog.list() == []  # the server's slot is the server's
    cluster.execute("DROP ROLE pgkeep_test_role")


def test_a_database_dropped_mid_run_fails_only_its_own_job(
    many: list[str], cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    settings = load_settings(config=_config(tmp_path, cluster, database, '["mt_0*"]', "[]"))
    runtime = wiring.build(settings)
    runtime.discover()
    cluster.execute('CREATE DATABASE "mt_0z"')
    runtime.discover()
    assert "main.mt_0z" in runtime.services
    run = threading.Thread(target=scheduling.run_server, args=(runtime, "main", JobKind.CREATE))
    run.start()
    deadline = time.monotonic() + 30
    while _pg_dumps_now() == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    cluster.execute('DROP DATABASE "mt_0z" WITH (FORCE)')  # mid-run: its job waits in the queue
    run.join(timeout=120)
    jobs = {j.target: j for j in runtime.jobs.list()}
    assert jobs["main.mt_0z"].status == "failed"
    assert "mt_0z" in str(jobs["main.mt_0z"].error)
    assert all(jobs[f"main.mt_0{i}"].status == "succeeded" for i in range(10))
    runtime.discover()
    assert "main.mt_0z" not in runtime.services  # gone, and no backup to keep: forgotten


def test_retention_of_one_target_never_touches_anothers(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    settings = load_settings(config=_config(tmp_path, cluster, database))
    runtime = wiring.build(settings)
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    shop = runtime.specs["shop"].settings.model_copy(
        update={"backup_dir": tmp_path / "store" / "shop"}
    )
    crm = runtime.specs["crm"].settings.model_copy(
        update={"backup_dir": tmp_path / "store" / "crm-folder"}
    )
    dbname = runtime.specs["shop"].target.dbname
    planted_shop = plant_backup(shop, old, database=dbname)
    planted_crm = plant_backup(crm, old, database=dbname)
    runtime.services["shop"].creating.create(None, ACTOR)  # keep_last = 1: deletes its own old one
    assert [b.name for b in runtime.services["shop"].catalog.list()] != [planted_shop]
    assert planted_shop not in [b.name for b in runtime.services["shop"].catalog.list()]
    assert [b.name for b in runtime.services["crm"].catalog.list()] == [planted_crm]


def test_target_names_are_escaped_from_database_names() -> None:
    assert targets.escape("shop") == "shop"
    assert targets.escape("my db.v2/é") == "my~20db~2Ev2~2F~C3~A9"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[targets."bad name"]\ndatabase_url = "postgresql://h/db"',
            "targets.bad name: not a target name",
        ),
        ("[targets.x]\nprefix = 'x'", "targets.x.database_url: Field required"),
        *(
            (
                f"[targets.x]\ndatabase_url = 'postgresql://h/db'\nprefix = '{bad}'",
                "targets.x.prefix: Value error, must be '' or folder names",
            )
            for bad in ("../../tmp/out", "/abs", "a/../../b", "a//b", ".hidden", "a/")
        ),
        (
            "[targets.crm2]\ndatabase_url = 'postgresql://h/db'\nretention_dayz = 1",
            ":18: targets.crm2.retention_dayz: Extra inputs",
        ),
        (
            "[targets.shop2]\ndatabase_url = 'postgresql://h/db'\nprefix = 'crm-folder'",
            "same prefix",
        ),
    ],
)
def test_bad_configuration_files_say_where(
    cluster: ThrowawayCluster, database: str, tmp_path: Path, extra: str, message: str
) -> None:
    path = _config(tmp_path, cluster, database)
    path.write_text(path.read_text().replace("[servers.main]", extra + "\n\n[servers.main]"))
    with pytest.raises(ConfigError) as caught:
        wiring.build(load_settings(config=path))
    assert message in str(caught.value.message) + str(caught.value.details)
    assert "\n" not in caught.value.message


def test_targets_on_several_servers_need_a_control_database(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    path = _config(tmp_path, cluster, database)
    path.write_text(
        path.read_text() + "\n[targets.far]\ndatabase_url = 'postgresql://u@10.9.9.9:5432/far'\n"
    )
    with pytest.raises(ConfigError, match="PGKEEP_CONTROL_DATABASE_URL: required"):
        wiring.build(load_settings(config=path))
    wiring.build(load_settings(config=path, control_database_url=cluster.url()))


def test_a_found_database_never_shares_a_folder_with_a_target(
    cluster: ThrowawayCluster,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`prefix = "main.shop"` and `[servers.main]` finding `shop` shared a folder, and one
    target's retention deleted the other's only backup. Found at start or later, such a
    database is not made a target: an error names both, and readiness shows it."""
    for name in ("shop", "shop_late"):
        cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cluster.create_database("shop")
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f'''
jwt_secret = "{SECRET}"
backup_dir = "{tmp_path / "store"}"
pg_bin_dir = "{cluster.bin_dir}"

[targets.front]
database_url = "{database}"
prefix = "main.shop"

[targets.later]
database_url = "{database}"
prefix = "main.shop_late"

[servers.main]
url = "{cluster.url()}"
include = ["shop*"]
'''
    )
    runtime = wiring.build(load_settings(config=path))
    try:
        with caplog.at_level(logging.ERROR, logger="pgkeep.targets"):
            runtime.start()
            assert sorted(runtime.services) == ["front", "later"]
            [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert "target 'main.shop'" in error
            assert "prefix 'main.shop', the prefix of target 'front'" in error
            check = runtime.services["front"].readiness()[-1]
            assert (check.name, check.ok) == ("prefix", False)
            assert "'main.shop'" in check.details
            caplog.clear()
            cluster.create_database("shop_late")
            assert runtime.discover() == []  # and at every rediscovery
            [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert "target 'main.shop_late'" in error  # shop's is not logged again
            assert "the prefix of target 'later'" in error
        prefixes = [spec.prefix for spec in runtime.specs.values()]
        assert len(prefixes) == len(set(prefixes))
        monkeypatch.setenv("PGKEEP_CONFIG", str(path))
        assert main(["targets"]) == 0
        listed = capsys.readouterr().out
        assert "main.shop (not added: prefix of front)\tdatabase" in listed
        assert "main.shop_late (not added: prefix of later)\tdatabase" in listed
    finally:
        runtime.stop()
        for name in ("shop", "shop_late"):
            cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def two_targets(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> Callable[..., httpx.AsyncClient]:
    def client(**overrides: object) -> httpx.AsyncClient:
        path = tmp_path / "two.toml"
        path.write_text(
            f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
            f'pg_bin_dir = "{cluster.bin_dir}"\n'
            f'[targets.shop]\ndatabase_url = "{database}"\n'
            f'[targets.crm]\ndatabase_url = "{database}"\n'
        )
        app = create_app(load_settings(config=path, **overrides))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    return client


@pytest.mark.anyio
async def test_every_route_honours_the_target(
    two_targets: Callable[..., httpx.AsyncClient], auth: dict[str, str]
) -> None:
    async with two_targets() as api:
        unnamed = await api.get("/api/backup/list", headers=auth)
        assert unnamed.status_code == 400
        assert unnamed.json()["details"] == "crm, shop"
        shop = (await api.post("/api/backup/create?target=shop", headers=auth)).json()
        name = shop["filename"]
        crm = (await api.get("/api/backup/list?target=crm", headers=auth)).json()
        assert crm["count"] == 0
        listed = (await api.get("/api/backup/list?target=shop", headers=auth)).json()
        assert [(b["filename"], b["target"]) for b in listed["backups"]] == [(name, "shop")]
        every = (await api.get("/api/backup/list?target=*", headers=auth)).json()
        assert [b["target"] for b in every["backups"]] == ["shop"]
        for method, path, body in [
            ("GET", f"/api/backup/download/{name}", None),
            ("POST", f"/api/backup/{name}/verify", {}),
            ("POST", f"/api/backup/{name}/pin", None),
            ("POST", f"/api/backup/{name}/restore", {"targetDatabase": "nope"}),
            ("POST", f"/api/backup/download-link/{name}", None),
            ("DELETE", f"/api/backup/{name}", None),
        ]:
            wrong = await api.request(method, f"{path}?target=crm", headers=auth, json=body)
            assert wrong.status_code == 404, (method, path, wrong.text)
        link = (
            await api.post(f"/api/backup/download-link/{name}?target=shop", headers=auth)
        ).json()
        assert "target=shop" in link["url"]
        assert (await api.get(link["url"])).status_code == 200
        rows = (await api.get("/api/backup/targets", headers=auth)).json()
        by_name = {row["name"]: row for row in rows["targets"]}
        assert set(by_name) == {"shop", "crm"}
        assert by_name["shop"]["count"] == 1
        assert by_name["shop"]["lastBackup"]["filename"] == name
        assert by_name["crm"]["lastBackup"] is None
        assert by_name["shop"]["reachable"] is True
        assert rows["defaultTarget"] is None
        deleted = await api.delete(f"/api/backup/{name}?target=shop", headers=auth)
        assert deleted.status_code == 200
    async with two_targets(default_target="crm") as api:
        assert (await api.get("/api/backup/list", headers=auth)).json()["count"] == 0


@pytest.mark.anyio
async def test_one_create_per_target_but_targets_in_parallel(
    two_targets: Callable[..., httpx.AsyncClient], auth: dict[str, str]
) -> None:
    async with two_targets() as api:
        first = await api.post("/api/backup/create?target=shop&async=true", headers=auth)
        other = await api.post("/api/backup/create?target=crm&async=true", headers=auth)
        again = await api.post("/api/backup/create?target=shop", headers=auth)
        assert (first.status_code, other.status_code) == (202, 202)
        if again.status_code == 409:  # the first may already be done on a fast machine
            assert first.json()["job"]["id"] in again.json()["error"]
        for job in (first.json()["job"], other.json()["job"]):
            done = (await api.get(f"/api/backup/jobs/{job['id']}", headers=auth)).json()["job"]
            while done["status"] in ("queued", "running"):
                await _sleep()
                done = (await api.get(f"/api/backup/jobs/{job['id']}", headers=auth)).json()["job"]
            assert done["status"] == "succeeded"
            assert done["target"] == job["target"]


async def _sleep() -> None:
    await asyncio.sleep(0.05)


def test_the_old_single_target_setup_is_unchanged(settings: Settings) -> None:
    runtime = wiring.build(settings)
    [spec] = runtime.specs.values()
    assert spec.prefix == ""
    assert runtime.service() is runtime.services[spec.name]
    assert runtime.service().catalog.storage.directory == settings.backup_dir.resolve()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_dropped_databases_backups_outlive_restarts_until_deleted(
    cluster: ThrowawayCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone drops the production database: its target stays, marked gone, with every
    backup listed, downloadable, verifiable and restorable, after a restart and in the CLI
    (which discovers afresh); it is never backed up again; once its backups are deleted
    it is forgotten. (The gone state lived in memory: after a restart, `?target=` said
    "no target" though every backup was still in the store.)"""
    name = "gone_" + tmp_path.name[-6:].lower().replace("-", "_")
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cluster.create_database(name)
    cluster.execute("CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2)", name)
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\n[servers.main]\nurl = "{cluster.url()}"\n'
        f'include = ["{name}"]\n'
    )
    target = f"main.{name}"
    settings = load_settings(config=path)
    first = wiring.build(settings)
    first.discover()
    backup = first.services[target].creating.create(None, ACTOR)
    first.shared.board.close()
    cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    app = create_app(load_settings(config=path))  # a restart
    again = app.state.runtime
    transport = httpx.ASGITransport(app=app)
    token = {"Authorization": f"Bearer {_token(again.settings)}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        listed = (await api.get(f"/api/backup/list?target={target}", headers=token)).json()
        assert [b["filename"] for b in listed.get("backups", [])] == [backup.name], listed
        shown = (await api.get("/api/backup/targets", headers=token)).json()["targets"]
        assert [(t["gone"], t["status"]) for t in shown if t["name"] == target] == [(True, "gone")]
        download = await api.get(
            f"/api/backup/download/{backup.name}?target={target}", headers=token
        )
        assert download.status_code == 200
        verified = await api.post(
            f"/api/backup/{backup.name}/verify?target={target}",
            headers=token,
            json={"restore": True},
        )
        assert verified.json()["verified"] is True, verified.text
        restored = await api.post(
            f"/api/backup/{backup.name}/restore?target={target}",
            headers=token,
            json={"targetDatabase": name},
        )
        assert restored.status_code == 200, restored.text
    cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    scheduling.run_server(again, "main", JobKind.CREATE)  # a slot: no backup of a gone target
    assert [b.name for b in again.services[target].catalog.list()] == [backup.name]

    monkeypatch.setenv("PGKEEP_CONFIG", str(path))
    assert main(["backup", "--target", target, "list"]) == 0
    assert backup.name in capsys.readouterr().out  # the CLI, discovering afresh
    again.services[target].catalog.delete(backup.name, ACTOR)
    again.discover()
    assert target not in again.services  # no backups left: forgotten
    assert main(["backup", "--target", target, "list"]) != 0
    again.shared.board.close()


def _token(settings: Settings) -> str:
    from pgkeep import tokens

    return tokens.mint(settings, sub="alice", role="OWNER", ttl=timedelta(hours=1))
