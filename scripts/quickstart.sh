#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Quick start: set up, build, and run a small "agent" under agentcage, printing what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
bash scripts/build.sh >/dev/null
echo "== agentcage trace -o text -- sh scripts/demo-agent.sh"
exec ./build/agent/agentcage trace -o text -- sh scripts/demo-agent.sh
