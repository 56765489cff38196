#!/bin/sh
# Build the wheels of the core and of the chosen connectors from a checkout, then install only those wheels
# (and their dependencies from the package index) into a new virtual environment, with compiled bytecode.
#
#   deploy/install.sh SOURCE_DIR VENV_DIR "CONNECTOR ..." [CORE_EXTRAS]
#
# The image's build stage runs this (deploy/Dockerfile), and so does tests/test_deploy.py, since no container
# engine runs in CI: the test checks the same steps the image takes. CONNECTORS are folder names under
# SOURCE_DIR/connectors ("databricks snowflake"); CORE_EXTRAS is a comma-separated list of the core's extras
# ("flyte2" adds the Flyte 2 wire). Environment: UV (the uv binary), PYTHON (the interpreter of the venv),
# WHEEL_DIR (where the wheels go; default: VENV_DIR.wheels, removed at the end).
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 SOURCE_DIR VENV_DIR \"CONNECTOR ...\" [CORE_EXTRAS]" >&2
    exit 2
fi
src=$1
venv=$2
connectors=$3
extras=${4:-}
uv=${UV:-uv}
# Set, it makes the wheels reproducible and the compiled bytecode hash-checked: the .pyc files stay valid when
# `COPY --from` gives the sources new modification times (the pod cannot rewrite them: read-only filesystem).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1580601600}"
python=${PYTHON:-python3}
wheels=${WHEEL_DIR:-$venv.wheels}
keep_wheels=${WHEEL_DIR:+yes}

for name in $connectors; do
    if [ ! -f "$src/connectors/$name/pyproject.toml" ]; then
        available=$(cd "$src/connectors" && for d in */; do printf '%s ' "${d%/}"; done)
        echo "unknown connector '$name'; available: $available" >&2
        exit 2
    fi
done

rm -rf "$wheels"
mkdir -p "$wheels"
"$uv" build --quiet --wheel --no-create-gitignore --out-dir "$wheels" "$src/core"
for name in $connectors; do
    "$uv" build --quiet --wheel --no-create-gitignore --out-dir "$wheels" "$src/connectors/$name"
done

wheels=$(cd "$wheels" && pwd)
core_wheel=$(ls "$wheels"/flyteconnectors_core-*.whl)
requirements="flyteconnectors-core${extras:+[$extras]}@file://$core_wheel"
for wheel in "$wheels"/flyteconnectors_*.whl; do
    [ "$wheel" = "$core_wheel" ] || requirements="$requirements $wheel"
done

"$uv" venv --quiet --python "$python" "$venv"
# shellcheck disable=SC2086 # one argument per wheel
"$uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode $requirements
"$uv" pip check --quiet --python "$venv/bin/python"

[ -n "$keep_wheels" ] || rm -rf "$wheels"
"$venv/bin/flyteconnectors" list
