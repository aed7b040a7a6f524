#!/bin/sh
# Builds pgkeep's image file system. Run as root inside that file system, by the
# Containerfile's one RUN step and by `make image-rootfs` (mmdebstrap, then chroot): the
# two get the same files. It reads /tmp/pgkeep-build/: this script, healthcheck.py and the
# wheel `make wheel` built.
#
# PG_CLIENT_MAJORS: the PostgreSQL client majors to install, such as "15 17". Empty (the
# default): the release's own (bookworm: 15). A major Debian does not have comes from the
# PostgreSQL project's apt repository (PGDG), set up by the script Debian's
# postgresql-common ships, with the signing key it ships; the build needs to reach it then.
set -eu

BUILD=/tmp/pgkeep-build
UID_GID=10001
PG_CLIENT_MAJORS="${PG_CLIENT_MAJORS:-}"
export DEBIAN_FRONTEND=noninteractive

install_packages() {
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

apt-get update -qq
install_packages ca-certificates python3 python3-venv

if [ -z "$PG_CLIENT_MAJORS" ]; then
    install_packages postgresql-client
else
    for major in $PG_CLIENT_MAJORS; do
        if ! apt-cache show "postgresql-client-$major" >/dev/null 2>&1; then
            install_packages postgresql-common
            /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y >/dev/null ||
                echo "build.sh: could not set up the PostgreSQL project's repository" >&2
            break
        fi
    done
    for major in $PG_CLIENT_MAJORS; do
        apt-cache show "postgresql-client-$major" >/dev/null 2>&1 || {
            echo "build.sh: no postgresql-client-$major in Debian or PGDG" >&2
            exit 1
        }
        install_packages "postgresql-client-$major"
    done
fi

# pgkeep and only its runtime dependencies, in a virtualenv of Debian's Python.
python3 -m venv /opt/pgkeep
/opt/pgkeep/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "$BUILD"/pgkeep-*.whl
install -m 0755 "$BUILD/healthcheck.py" /opt/pgkeep/healthcheck.py
/opt/pgkeep/bin/pgkeep --help >/dev/null

# The user pgkeep runs as, and its two volumes: state (HOME) and backups, apart.
groupadd --gid "$UID_GID" pgkeep
useradd --uid "$UID_GID" --gid "$UID_GID" --home-dir /var/lib/pgkeep \
    --no-create-home --shell /usr/sbin/nologin pgkeep
install -d -o "$UID_GID" -g "$UID_GID" -m 0700 /var/lib/pgkeep /var/backups/pgkeep
install -d -m 0755 /etc/pgkeep

apt-get clean
rm -rf /var/lib/apt/lists/* "$BUILD"
