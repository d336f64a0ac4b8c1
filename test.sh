#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite; arguments go to pytest
# (e.g. `./test.sh -m slow` for the slow tests).
source "$(dirname "$0")/scripts/env.sh"
exec "$VENV/bin/python" -m pytest "$@"
