#!/bin/sh
# One step of examples/dag.jdl: records its name and what its parents left behind.
step="${1:?usage: step.sh NAME}"
echo "step $step on $(hostname) at $(date -u +%H:%M:%S)"
ls -1 *.txt 2>/dev/null | sed 's/^/  found /'
echo "$step" > "step_$step.txt"
