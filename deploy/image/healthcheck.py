"""The image's HEALTHCHECK: exit 0 when pgkeep answers GET /healthz (or the path given,
such as /readyz) with 200 within 3 seconds, 1 otherwise. Standard library only; it asks
the address pgkeep listens on (PGKEEP_HOST, PGKEEP_PORT), loopback for a wildcard."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# pgkeep listening on every address is asked on loopback.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def url(path: str) -> str:
    host = os.environ.get("PGKEEP_HOST", "127.0.0.1")
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('PGKEEP_PORT', '8000')}{path}"


def main(argv: list[str]) -> int:
    target = url(argv[1] if len(argv) > 1 else "/healthz")
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with direct.open(target, timeout=3) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:  # refused, timed out, reset (URLError is one)
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {target}: HTTP {status}", file=sys.stderr)
        return 1
    print(f"healthy: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
