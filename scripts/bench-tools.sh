#!/usr/bin/env bash
# Installs what `make bench` compares Plugboard with: wasmtime-cli at the
# exact wasmtime version the host is built on (read from Cargo.toml), into
# the project's own .tools/wasmtime, only when missing or at another
# version. The load benchmark runs its `wasmtime serve` peer with it.
# The first install compiles wasmtime: 10-20 minutes on two cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(sed -n 's/^wasmtime = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
[[ -n $version ]] || { echo "error: no pinned wasmtime version in Cargo.toml" >&2; exit 1; }
bin=.tools/wasmtime/bin/wasmtime
installed=""
[[ -x $bin ]] && installed=$("$bin" --version | awk '{print $2}')
if [[ $installed != "$version" ]]; then
    echo "installing wasmtime-cli $version into .tools/wasmtime (compiles wasmtime; cargo shows its progress)"
    cargo install wasmtime-cli --version "$version" --locked --root .tools/wasmtime
fi
