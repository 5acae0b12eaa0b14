#!/usr/bin/env bash
# make demo: the JDL tools on the example files.
set -euo pipefail
cd "$(dirname "$0")/.."
PW=.venv/bin/pilotwms
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Validate every example JDL"
$PW jdl check examples/*.jdl

step "Expand the parametric job into its concrete jobs"
$PW jdl expand examples/parametric.jdl

step "Expand the DAG (structure as JSON)"
$PW jdl expand --json examples/dag.jdl

step "Evaluate a Requirements expression against a slot ad"
$PW classad eval 'member("pilotwms-demo", other.GlueHostApplicationSoftwareRunTimeEnvironment) && other.GlueCEStateStatus == "Production"' \
    --target '[ GlueCEStateStatus = "Production"; GlueHostApplicationSoftwareRunTimeEnvironment = {"pilotwms-demo", "python3"} ]'

step "A broken JDL is rejected with line, column and a caret"
printf 'Executable = "/bin/echo";\nArguments = "hello"\nStdOutput = "out.txt";\n' > /tmp/pilotwms-demo-broken.jdl
if $PW jdl check /tmp/pilotwms-demo-broken.jdl; then echo "expected a syntax error" >&2; exit 1; fi
rm -f /tmp/pilotwms-demo-broken.jdl
echo
echo "demo finished"
