#!/usr/bin/env bash
# README's second command, and what CI runs: set up with the dev tools and nsys, lint,
# type-check, test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROFKIT_DEV=1 bash scripts/setup.sh
# nsys for the end-to-end capture test: Debian's 2023.4.4 into .tools/nsys (downloads are
# cached under ~/.cache/profkit), else the archive in ../shared when there is one. Without
# either, that test is skipped (PROFKIT_REQUIRE_NSYS=1, as CI sets, makes it fail instead).
if [ ! -x .tools/nsys/target-linux-x64/nsys ]; then
  bash scripts/install_nsys.sh \
    || { [ -f ../shared/nsys/nsys-2023.4.4-linux-x64.tar.xz ] \
         && bash scripts/install_nsys.sh --from-archive ../shared/nsys/nsys-2023.4.4-linux-x64.tar.xz; } \
    || echo "test.sh: no nsys; the end-to-end capture test will be skipped" >&2
fi
# Chromium for tests/test_html.py, which opens the report pages headless: Debian's package, as root
# (CI). Without it those tests are skipped (PROFKIT_REQUIRE_CHROMIUM=1, as CI sets, fails them).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "test.sh: could not install chromium; the browser tests will be skipped" >&2
fi
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
