#!/usr/bin/env bash
# Build the Plugboard plugins and copy the components where the host looks
# for them: the Rust ones (plugins/, a cargo workspace of its own) for
# wasm32-wasip2, the JavaScript ones with componentize-js and the Python ones
# with componentize-py (scripts/guest-tools.sh installs both, pinned, into the
# project's own folders when they are missing).
#
# Usage: bash scripts/build-plugins.sh [OUT_DIR]
#
#   OUT_DIR   where the example plugins go (default: plugins.d); a relative
#             path is taken from the repository root.
#
# The test fixtures go to target/plugins-testing/ (repository root), with
# echo built twice: echo.wasm (version 1) and echo-v2.wasm (feature v2); the
# load benchmark's `wasmtime serve` peer to target/plugins-bench/.
# Cargo only rebuilds what changed, and a JavaScript or Python component is
# rebuilt only when its sources, wit/ or its tool's pin changed, so a second
# run takes a few seconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=scripts/guest-tools.sh
source scripts/guest-tools.sh
out=${1:-plugins.d}
testing=target/plugins-testing
triple=wasm32-wasip2
release=plugins/target/$triple/release
release_v2=plugins/target/echo-v2/$triple/release

if ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
fi

# Build: the whole workspace, then echo alone with `v2` in its own target
# directory so that both builds survive and neither invalidates the other.
(
    cd plugins
    export CARGO_TARGET_DIR="$root/plugins/target"
    cargo build --release --target "$triple"
    cargo build --release --target "$triple" -p echo --features v2 --target-dir target/echo-v2
)

# JavaScript and Python: the tools, then each component (skipped when fresh).
js_tools
python_tools
build_js js-rest plugins/js/rest-fetch connector
build_js js-hostile plugins/testing/js-hostile connector
build_python py-rest plugins/python/rest-callout connector
build_python py-field-map plugins/python/field-map-py processor
build_python py-hostile plugins/testing/py-hostile connector

# install SOURCE DESTINATION: copy one component and print its size. The
# copy is renamed into place, so a host watching the folder never loads a
# half-written file.
install() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.part"
    mv "$2.part" "$2"
    printf '%10d  %s\n' "$(wc -c <"$2")" "$2"
}

echo "example plugins:"
for name in rest-json http-fetch field-map validate; do
    install "$release/${name//-/_}.wasm" "$out/$name.wasm"
done
for name in js-rest py-rest py-field-map; do
    install "$guest_out/$name.wasm" "$out/$name.wasm"
done

echo "test fixtures:"
for name in hostile echo bad-describe bad-manifest describe-bomb; do
    install "$release/${name//-/_}.wasm" "$testing/$name.wasm"
done
install "$release/not-a-plugin.wasm" "$testing/not-a-plugin.wasm"
install "$release_v2/echo.wasm" "$testing/echo-v2.wasm"
for name in js-hostile py-hostile; do
    install "$guest_out/$name.wasm" "$testing/$name.wasm"
done

echo "benchmark peer (a wasi:http component for \`wasmtime serve\`, not a plugin):"
install "$release/wasi_http_peer.wasm" target/plugins-bench/wasi-http-peer.wasm
