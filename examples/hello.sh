#!/bin/sh
# Says hello, shows where it runs and writes a file that comes back in the OutputSandbox.
echo "Hello from $(hostname) as $(id -un 2>/dev/null || echo unknown)"
echo "arguments: $*"
echo "greeting for ${1:-world}" > greeting.txt
echo "done" >&2
