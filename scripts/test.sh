#!/usr/bin/env bash
# Set up what is missing, then run the test suite:
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh tests/unit -x   # extra arguments go to pytest
#
# 1. Debian peers (dcmtk, orthanc, dicom3tools, postgresql, libgdcm-tools, openjph-tools):
#    installed with apt-get when missing and running as root; otherwise the script says
#    what to install and the tests that need them are skipped.
# 2. .venv (created if missing), torch 2.13.0 CPU build, then `pip install -e '.[ml,dev,vgg16]'`;
#    each step is skipped when already satisfied (scripts/check_env.py checks the project).
# 3. `.venv/bin/python -m pytest -q [ARGS]`; its exit status is this script's. Exit 5
#    (no test collected) is reported as the failure it is.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_common.sh
source scripts/_common.sh

ensure_debian_peers "${TEST_ONLY_PACKAGES[@]}"
ensure_venv
ensure_torch
ensure_project

say ".venv/bin/python -m pytest -q $*"
rc=0
"$VENV/bin/python" -m pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    printf 'error: pytest collected no tests (exit 5)\n' >&2
fi
exit "$rc"
