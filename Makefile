# The README's commands. Each sets up its own virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit packages wheel image-rootfs bench mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pgkeep demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages the tests use: chromium (the console's browser tests), age (the
# reference age command: encrypted backups must open without pgkeep) and systemd
# (systemd-analyze checks deploy/systemd/pgkeep.service). Installed when missing and we
# may (root); otherwise those tests are reported as skipped.
DEBIAN_PACKAGES := chromium age systemd
packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null 2>&1 || echo "$$p not installed: its tests will be skipped"; done

# As root, the suite also runs the container image's file system (tests/deploy/test_image.py),
# built when what goes into it changed (about a minute; Debian's mirror and PyPI). Not root:
# that test is skipped, saying why (mmdebstrap and chroot need root).
IMAGE_STAMP := image-rootfs/.pgkeep-built
IMAGE_INPUTS := pyproject.toml Containerfile $(shell find src deploy/image -type f -not -name '*.pyc' 2>/dev/null)
unit: $(STAMP) packages $(if $(filter 0,$(shell id -u)),$(IMAGE_STAMP))
	$(BIN)/pytest

$(IMAGE_STAMP): $(IMAGE_INPUTS)
	$(MAKE) image-rootfs
	touch $(IMAGE_STAMP)

test: lint typecheck unit

# The wheel docs/install.md installs (runtime dependencies only), in dist/. build/ is
# removed first: setuptools would otherwise ship files left there by an earlier build.
wheel: $(STAMP)
	rm -rf build dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf build
	@ls -l dist/*.whl

# Part of `make test` as root (see IMAGE_STAMP; a minute or two, Debian's mirror and PyPI): the container
# image's file system without a container engine, in image-rootfs/. mmdebstrap lays out a
# minimal Debian (without docs, as the -slim images), then deploy/image/build.sh runs in it
# as the Containerfile runs it: with a clean environment (proxy variables passed on, as
# container builds do) and pip trusting what this machine trusts (its CA bundle, for
# TLS-inspecting proxies; build.sh removes it, the image keeps Debian's).
# tests/deploy/test_image.py runs pgkeep in it by chroot.
DEBIAN_RELEASE ?= bookworm
PG_CLIENT_MAJORS ?=
HOST_CA := $(wildcard /etc/ssl/certs/ca-certificates.crt)
SLIM := $(foreach p,doc/* man/* groff/* info/* lintian/* linda/* locale/*,--dpkgopt='path-exclude=/usr/share/$(p)')
BUILD_ENV := PATH=/usr/sbin:/usr/bin:/sbin:/bin PG_CLIENT_MAJORS="$(PG_CLIENT_MAJORS)" \
  $(if $(HOST_CA),PIP_CERT=/tmp/pgkeep-build/ca-certificates.crt) \
  $(foreach v,http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY,$(if $($(v)),$(v)="$($(v))"))
image-rootfs: wheel
	@[ "$$(id -u)" = 0 ] || { echo "make image-rootfs needs root (mmdebstrap, chroot)"; exit 1; }
	@command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
	rm -rf image-rootfs image-rootfs.tmp
	mmdebstrap --quiet --mode=root --variant=apt $(SLIM) \
	  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	  --customize-hook='mkdir -p "$$1/tmp/pgkeep-build"' \
	  --customize-hook='copy-in deploy/image/build.sh deploy/image/healthcheck.py $(wildcard dist/pgkeep-*.whl) $(HOST_CA) /tmp/pgkeep-build' \
	  --customize-hook='chroot "$$1" env -i $(BUILD_ENV) sh /tmp/pgkeep-build/build.sh' \
	  $(DEBIAN_RELEASE) image-rootfs.tmp
	mv image-rootfs.tmp image-rootfs
	@du -sh --apparent-size image-rootfs

# Not part of `make test`: builds ~2 GB of data and takes several minutes.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Not part of `make test`: mutation testing of the security-critical modules (about 14
# minutes on two cores), against their own fast tests, then the hand mutants of
# tests/hand_mutants.py; prints each module's score (goal: 90%) and fails below it, or
# when a hand mutant survives or is stale.
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run > mutants.log 2>&1 || { tail -c 2000 mutants.log; exit 1; }
	-$(BIN)/python tests/hand_mutation.py
	$(BIN)/python tests/mutation_report.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants mutants.log build dist image-rootfs image-rootfs.tmp
