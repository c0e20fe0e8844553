#!/bin/sh
# Writes the oracle's canonical file for one t_save case:
#   make_expected.sh T_SAVE PYTHON ORACLE CASE DIR
set -eu
t_save=$1 python=$2 oracle=$3 case=$4 dir=$5
mkdir -p "$dir"
"$t_save" describe "$case" "$dir/$case.spec.json"
"$python" "$oracle" "$dir/$case.spec.json" "$dir/$case.expected.safetensors"
