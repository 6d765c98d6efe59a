# Shared set-up steps for scripts/test.sh, scripts/demo.sh and .ci/run.
# Source it from the repository root; it defines functions and runs nothing.
#
# Every step checks first and does nothing when what it would install is already there,
# so running a script twice (or test.sh after .ci/run) installs nothing the second time.
#
# Knobs (environment variables):
#   PYTHON                Python 3.11+ used to create .venv (default: python3.11, else python3)
#   VENV                  virtual environment folder (default: .venv)
#   TORCH_VERSION         torch release to install, CPU build (default: 2.13.0)
#   DICOM_NODE_SKIP_APT=1 never call apt-get, only report missing Debian packages

VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PROJECT_EXTRAS="${PROJECT_EXTRAS:-ml,dev,vgg16}"

# Debian packages of the real peers the integration tests talk to (libgdcm-tools and
# openjph-tools: the JPEG 2000 and HTJ2K encoders of the compressed-source tests).
PEER_PACKAGES=(dcmtk orthanc dicom3tools postgresql libgdcm-tools openjph-tools)
# Only the tests need these: the results pages' browser test (headless chromium, driven by
# Selenium through the system driver; nothing is downloaded).
TEST_ONLY_PACKAGES=(chromium chromium-driver)

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

can_apt() {
    is_root && command -v apt-get >/dev/null 2>&1 && [ "${DICOM_NODE_SKIP_APT:-0}" != "1" ]
}

# -- Debian packages ------------------------------------------------------------------------

# Print the packages among "$@" that dpkg does not list as installed.
missing_debian_packages() {
    local package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            printf '%s\n' "$package"
        fi
    done
}

# apt-get install without letting the packages start their services (Orthanc and
# PostgreSQL would otherwise start system-wide daemons; the tests start their own on
# free ports). An existing /usr/sbin/policy-rc.d is left as it is.
apt_install_quietly() {
    local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0 log
    log="$(mktemp /tmp/dicom-node-apt.XXXXXX)"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# written by dicom-node scripts/_common.sh during apt-get install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >"$log" 2>&1 || rc=$?
    if [ "$own_policy" -eq 1 ]; then
        rm -f "$policy"
    fi
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$log" >&2
        die "apt-get install $* failed (log: $log)"
    fi
    rm -f "$log"
}

# Orthanc's own Debian service is not needed: stop it if a package install started it.
stop_orthanc_service() {
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
        say "stopping and disabling the system Orthanc service (the tests start their own)"
        systemctl disable --now orthanc >/dev/null 2>&1 || warn "could not stop the orthanc service"
    elif [ -x /etc/init.d/orthanc ] && /etc/init.d/orthanc status >/dev/null 2>&1; then
        say "stopping the system Orthanc service (the tests start their own)"
        /etc/init.d/orthanc stop >/dev/null 2>&1 || warn "could not stop the orthanc service"
    fi
}

# Install the PEER_PACKAGES (and any packages given as arguments) when missing and
# possible; otherwise say what to install (the tests that need them are skipped with the
# same hint).
ensure_debian_peers() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "not a Debian system: install dcmtk, Orthanc, dicom3tools, PostgreSQL, GDCM" \
            "and OpenJPH yourself;" \
            "tests that need them are skipped"
        return 0
    fi
    local missing
    missing="$(missing_debian_packages "${PEER_PACKAGES[@]}" "$@")"
    if [ -z "$missing" ]; then
        return 0
    fi
    # shellcheck disable=SC2086
    if can_apt; then
        say "installing Debian packages: $(echo $missing)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_install_quietly $missing
        stop_orthanc_service
    else
        warn "missing Debian packages: $(echo $missing)"
        warn "install them with: sudo apt-get install -y $(echo $missing)"
        warn "until then, the tests that need them are skipped"
    fi
}

# -- Python ---------------------------------------------------------------------------------

pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        printf '%s\n' "$PYTHON"
    elif command -v python3.11 >/dev/null 2>&1; then
        printf 'python3.11\n'
    else
        printf 'python3\n'
    fi
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return 0
    fi
    local python
    python="$(pick_python)"
    command -v "$python" >/dev/null 2>&1 || die "$python not found: install Python 3.11 (apt-get install python3)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
        || die "$python is not a usable Python 3.11 or newer (set PYTHON=/path/to/python3.11)"
    say "creating $VENV with $("$python" -V 2>&1)"
    if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        if can_apt; then
            say "installing python3-venv (Debian splits venv out of python3)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
            apt_install_quietly python3-venv
            "$python" -m venv "$VENV" || die "cannot create $VENV with $python"
        else
            die "cannot create $VENV with $python: on Debian, sudo apt-get install python3-venv"
        fi
    fi
}

pip_q() { "$VENV/bin/python" -m pip -q "$@"; }

# True when torch $TORCH_VERSION, built without CUDA, is importable in the venv.
cpu_torch_installed() {
    "$VENV/bin/python" - "$TORCH_VERSION" >/dev/null 2>&1 <<'EOF'
import sys

import torch

wanted = sys.argv[1]
sys.exit(0 if torch.__version__.split("+")[0] == wanted and torch.version.cuda is None else 1)
EOF
}

# torch first, CPU build only, so that `pip install -e '.[ml]'` finds it satisfied and
# never pulls a CUDA build of several GB. On the project's machines `pip install
# torch==2.13.0` takes the CPU wheel that lies on disk; elsewhere point pip at a CPU wheel
# (PIP_FIND_LINKS or PIP_EXTRA_INDEX_URL) before running this.
ensure_torch() {
    if cpu_torch_installed; then
        return 0
    fi
    say "installing torch==${TORCH_VERSION} (CPU build)"
    pip_q install "torch==${TORCH_VERSION}" || die "could not install torch==${TORCH_VERSION}"
    cpu_torch_installed || die "the torch now installed is not the ${TORCH_VERSION} CPU build;" \
        "uninstall it and provide a CPU wheel (see the comment above ensure_torch)"
}

# True when the checkout is installed editable and every requirement of
# .[${PROJECT_EXTRAS}] in pyproject.toml is satisfied.
project_installed() {
    "$VENV/bin/python" scripts/check_env.py --extras "$PROJECT_EXTRAS" . >/dev/null 2>&1
}

ensure_project() {
    if project_installed; then
        return 0
    fi
    say "installing dicom-node and its dependencies: pip install -e '.[${PROJECT_EXTRAS}]'"
    pip_q install -e ".[${PROJECT_EXTRAS}]"
    "$VENV/bin/python" scripts/check_env.py --extras "$PROJECT_EXTRAS" . \
        || die "the environment still misses requirements after pip install"
}
