#!/usr/bin/env bash
# Sets up .venv if needed, then runs the main job: `./run.sh` alone runs the
# default; any arguments go to the `tf-prompt-tuning` command line.
source "$(dirname "$0")/scripts/env.sh"
if [ $# -eq 0 ]; then set -- train; fi
exec "$VENV/bin/tf-prompt-tuning" "$@"
