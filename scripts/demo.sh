#!/usr/bin/env bash
# Set up what is missing and start a local dicom-node to try out (Ctrl-C stops it).
#
#   ./scripts/demo.sh
#
# Until a `dicom-node demo` command exists, this script:
# 1. creates .venv if missing, installs torch 2.13.0 (CPU build) and
#    `pip install -e '.[ml,dev]'` (each step skipped when already satisfied);
# 2. writes var/demo.toml from deploy/dicom-node.example.toml (once; delete it, or all of
#    var/, to start afresh): port 11112 on 127.0.0.1, storage and database under var/,
#    one worker, studies stable after 5 quiet seconds;
# 3. prints how to send images to it and query it, and runs
#    `dicom-node serve --config var/demo.toml` in the foreground.
#
# DICOM_NODE_* environment variables override the file, e.g. DICOM_NODE_PORT=11113.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_common.sh
source scripts/_common.sh

ensure_venv
ensure_torch
ensure_project

CONFIG=var/demo.toml
EXAMPLE=deploy/dicom-node.example.toml
NODE="$VENV/bin/dicom-node"

write_demo_config() {
    mkdir -p var
    local tmp="$CONFIG.tmp"
    {
        printf '# Written by scripts/demo.sh from %s; relative paths are relative to var/.\n' "$EXAMPLE"
        sed -E \
            -e 's|^bind_address = .*|bind_address = "127.0.0.1"|' \
            -e 's|^port = .*|port = 11112|' \
            -e 's|^storage_dir = .*|storage_dir = "storage"|' \
            -e 's|^database_url = .*|database_url = "sqlite:///dicom-node.sqlite"|' \
            -e 's|^model_dir = .*|model_dir = "models"|' \
            -e 's|^workers = .*|workers = 1|' \
            -e 's|^stable_after_seconds = .*|stable_after_seconds = 5|' \
            -e 's|^stable_check_seconds = .*|stable_check_seconds = 1|' \
            "$EXAMPLE"
    } >"$tmp"
    # Fail loudly if the example changed shape and a key was not rewritten.
    local line
    for line in 'bind_address = "127.0.0.1"' 'port = 11112' 'storage_dir = "storage"' \
        'database_url = "sqlite:///dicom-node.sqlite"' 'model_dir = "models"' 'workers = 1' \
        'stable_after_seconds = 5' 'stable_check_seconds = 1'; do
        grep -qxF "$line" "$tmp" || die "could not set '$line' in $CONFIG: has $EXAMPLE changed?"
    done
    mv "$tmp" "$CONFIG"
    say "wrote $CONFIG"
}

if [ ! -f "$CONFIG" ]; then
    write_demo_config
else
    say "using the existing $CONFIG (delete it to regenerate)"
fi
"$NODE" config check "$CONFIG"

sample="$("$VENV/bin/python" -c 'from pydicom.data import get_testdata_file; print(get_testdata_file("CT_small.dcm") or "")' 2>/dev/null || true)"
sample="${sample:-FILES}"
port="${DICOM_NODE_PORT:-11112}"

cat <<EOF

dicom-node demo: receiving as DICOM_NODE on 127.0.0.1:${port}, data under var/.
In another terminal, send images (a file, several files or folders):

  $NODE send ${sample} --to 127.0.0.1:${port} --aec DICOM_NODE
  storescu -aec DICOM_NODE 127.0.0.1 ${port} ${sample}     # dcmtk (apt-get install dcmtk)

then, about 5 seconds after the last image, the study is stable and its jobs exist:

  $NODE studies --config $CONFIG
  $NODE jobs --config $CONFIG
  $NODE results --config $CONFIG --format json
  sqlite3 var/dicom-node.sqlite      # the results log (docs/results-log.md)

No AI pipeline is shipped yet, so the jobs the example routes create end as "failed"
with "no pipeline named ...". Ctrl-C stops the node.

EOF

exec "$NODE" serve --config "$CONFIG"
