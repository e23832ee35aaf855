#!/usr/bin/env bash
# Installs the API conformance tool the suite runs against a live host
# (tests/e2e/contract.rs): schemathesis, pinned in
# tests/schemathesis/requirements.txt, in the virtual environment
# .tools/api-venv (the project's own folder, never globally). Installs only
# when missing or at another version. Run from the repository root;
# `make test` runs it.
set -euo pipefail

venv=.tools/api-venv
requirements=tests/schemathesis/requirements.txt

command -v python3 >/dev/null || {
    echo "error: \`python3\` is missing: install Python 3.10 or later with its venv module" >&2
    exit 1
}
pinned=$(sed -n 's/^schemathesis==//p' "$requirements")
installed=""
if [[ -x $venv/bin/schemathesis ]]; then
    installed=$("$venv/bin/schemathesis" --version | awk '{print $NF}')
fi
[[ $installed == "$pinned" ]] && exit 0
echo "installing schemathesis $pinned into $venv"
[[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
