#!/bin/sh
# torch_python.sh — prints the Python the PyTorch twins run with: $PYTHON when set, else the
# first of python3 (a venv's, as on the GPU machine) and /usr/bin/python3 (Debian's) that
# imports numpy and torch, else python3 (whose error then says what is missing).
if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; exit 0; fi
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import numpy, torch' 2>/dev/null; then echo "$p"; exit 0; fi
done
echo python3
