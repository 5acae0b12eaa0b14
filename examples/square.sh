#!/bin/sh
# Squares its argument into square_<n>.txt (one node of examples/parametric.jdl).
n="${1:?usage: square.sh N}"
echo "$n squared is $((n * n))" | tee "square_$n.txt"
