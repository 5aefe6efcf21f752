#!/usr/bin/env bash
# Create .venv (once) and install mtlkit with the extras the Quickstart and the tests use.
# Idempotent and quick when nothing changed. Every pip call passes -c constraints.txt, which
# pins torch==2.13.0 (a CPU wheel on this kind of machine) so nothing pulls CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "mtlkit needs Python >= 3.10 (set PYTHON=/path/to/python3.x)" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.mtlkit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "installing mtlkit into .venv (first run takes about a minute)..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
        -e '.[dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    touch "$stamp"
fi
