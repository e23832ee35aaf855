# Build JavaScript and Python plugins: the pinned tools and the component
# builds, sourced by scripts/build-plugins.sh (run from the repository root).
#
# The tools live in the project's own folders, never globally:
# - componentize-js, pinned in plugins/js/package.json and package-lock.json,
#   in plugins/js/node_modules (installed with `npm ci`);
# - componentize-py, pinned in plugins/python/requirements.txt, in the
#   virtual environment .tools/venv.
# Both are installed only when missing or at another version, and a
# component is rebuilt only when a source, wit/ or a tool pin is newer.

js_dir=plugins/js
python_venv=.tools/venv
python_requirements=plugins/python/requirements.txt
# Built components, before they are copied where the host looks for them.
guest_out=plugins/target/guests

# require COMMAND HINT: fail with HINT when COMMAND is missing.
require() {
    command -v "$1" >/dev/null || { echo "error: \`$1\` is missing: $2" >&2; exit 1; }
}

# js_tools: componentize-js at the version package.json pins.
js_tools() {
    require node "install Node.js 20 or later"
    require npm "install npm (it comes with Node.js)"
    local pinned installed
    pinned=$(node -p "require('./$js_dir/package.json').devDependencies['@bytecodealliance/componentize-js']")
    installed=$(node -p "try { require('./$js_dir/node_modules/@bytecodealliance/componentize-js/package.json').version } catch { '' }")
    [[ $installed == "$pinned" ]] && return
    echo "installing componentize-js $pinned into $js_dir/node_modules"
    if [[ -f $js_dir/package-lock.json ]]; then
        (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
        (cd "$js_dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
}

# python_tools: componentize-py at the version requirements.txt pins.
python_tools() {
    require python3 "install Python 3.10 or later with its venv module"
    local pinned installed=""
    pinned=$(sed -n 's/^componentize-py==//p' "$python_requirements")
    if [[ -x $python_venv/bin/componentize-py ]]; then
        installed=$("$python_venv/bin/componentize-py" --version | awk '{print $2}')
    fi
    [[ $installed == "$pinned" ]] && return
    echo "installing componentize-py $pinned into $python_venv"
    [[ -x $python_venv/bin/pip ]] || python3 -m venv "$python_venv"
    "$python_venv/bin/pip" install --quiet --disable-pip-version-check -r "$python_requirements"
}

# stale OUTPUT SOURCE...: whether OUTPUT is missing or older than a file in
# SOURCE (READMEs and Python's byte-code caches aside).
stale() {
    local output=$1
    shift
    [[ ! -e $output ]] && return 0
    [[ -n $(find "$@" -name __pycache__ -prune -o -newer "$output" -type f ! -name '*.md' -print -quit) ]]
}

# timed NAME COMMAND...: run COMMAND, saying how long building NAME took.
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    echo "  built $name in $((SECONDS - start)) s"
}

# build_js NAME DIR WORLD: plugins/.../DIR/index.js -> $guest_out/NAME.wasm.
build_js() {
    local name=$1 dir=$2 world=$3 output=$guest_out/$1.wasm
    mkdir -p "$guest_out"
    stale "$output" "$dir" "$js_dir/lib" "$js_dir/build.mjs" "$js_dir/package-lock.json" wit || return 0
    timed "$name" node "$js_dir/build.mjs" "$dir/index.js" "$world" "$output"
}

# build_python NAME DIR WORLD: plugins/.../DIR/app.py -> $guest_out/NAME.wasm.
# Bindings are generated from wit/ inside componentize-py; the contract's
# `types` interface is named `plugin_types` in both worlds.
build_python() {
    local name=$1 dir=$2 world=$3 output=$guest_out/$1.wasm
    mkdir -p "$guest_out"
    stale "$output" "$dir" plugins/python/lib "$python_requirements" wit || return 0
    timed "$name" "$python_venv/bin/componentize-py" --quiet --wit-path wit \
        --world "plugboard:plugin/$world" \
        --import-interface-name "plugboard:plugin/types@0.1.0=plugin_types" \
        componentize --python-path plugins/python/lib --python-path "$dir" app --output "$output.tmp"
    mv "$output.tmp" "$output"
}
