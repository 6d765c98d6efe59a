#!/usr/bin/env bash
# Set up what is missing and run `dicom-node demo`:
#
#   ./scripts/demo.sh                   # synthetic hand studies, end to end
#   ./scripts/demo.sh --keep-running    # leave the node and Orthanc up to look around
#   ./scripts/demo.sh --help            # every option of `dicom-node demo`
#
# 1. Debian peers (Orthanc serves as the demo's PACS): installed with apt-get when missing
#    and running as root; otherwise the demo uses a local receiving SCP instead.
# 2. .venv (created if missing), torch 2.13.0 CPU build, then `pip install -e '.[ml,dev,vgg16]'`;
#    each step is skipped when already satisfied.
# 3. `dicom-node demo [ARGS]`: writes a few synthetic hand studies and a CT series under
#    var/demo, imports the models shipped with dicom-node the first time (`--train` trains
#    small ones instead, a few minutes on 2 CPU cores), starts Orthanc and the node, sends
#    the studies from Orthanc, waits for the SR / SC / GSPS to come back and prints tables
#    of what came back beside the truth. Delete var/demo to start afresh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_common.sh
source scripts/_common.sh

ensure_debian_peers
ensure_venv
ensure_torch
ensure_project

say "dicom-node demo $*"
exec "$VENV/bin/dicom-node" demo "$@"
