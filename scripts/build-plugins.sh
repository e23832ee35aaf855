#!/usr/bin/env bash
# Build the Plugboard plugins (plugins/, a cargo workspace of its own) for
# wasm32-wasip2 and copy the components where the host looks for them.
#
# Usage: bash scripts/build-plugins.sh [OUT_DIR]
#
#   OUT_DIR   where the example plugins go (default: plugins.d); a relative
#             path is taken from the repository root.
#
# The test fixtures go to target/plugins-testing/ (repository root), with
# echo built twice: echo.wasm (version 1) and echo-v2.wasm (feature v2).
# Cargo only rebuilds what changed, so a second run takes a few seconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
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

# install SOURCE DESTINATION: copy one component and print its size.
install() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2"
    printf '%10d  %s\n' "$(wc -c <"$2")" "$2"
}

echo "example plugins:"
for name in rest-json http-fetch field-map validate; do
    install "$release/${name//-/_}.wasm" "$out/$name.wasm"
done

echo "test fixtures:"
for name in hostile echo bad-describe bad-manifest; do
    install "$release/${name//-/_}.wasm" "$testing/$name.wasm"
done
install "$release/not-a-plugin.wasm" "$testing/not-a-plugin.wasm"
install "$release_v2/echo.wasm" "$testing/echo-v2.wasm"
