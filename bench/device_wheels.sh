#!/usr/bin/env bash
# For a GPU machine that cannot reach a package registry but has Python and torch (an
# image with CUDA): download here the wheels prefuse needs beyond such an image (Optuna
# and what it pulls, tomli-w) into a folder to copy there, where
# `WHEELS=<that folder> bash bench/device_check.sh` installs prefuse from it first.
#
#     bash bench/device_wheels.sh [DIR] [PYTHON_VERSION]   # default .device-wheels 3.12
#
# The wheels are for x86-64 Linux and the given CPython version (the target's, not this
# machine's: `python3 --version` there).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.device-wheels}
VERSION=${2:-3.12}
PIP=${PIP:-$(command -v pip || echo "python3 -m pip")}
mkdir -p "$DIR"
$PIP download --quiet --only-binary :all: --implementation cp --python-version "$VERSION" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$DIR" optuna tomli-w
ls "$DIR"
du -sh "$DIR"
