#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Quick start: set up, build, and run a small "agent" under the `default` profile, showing
# every event it caused, each blocked attempt as a VIOLATION naming the kernel mechanism
# that stopped it, and a summary. Two made-up credentials in its environment show the
# profile keeping them out (named on stderr, never reaching the agent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
echo "== building (first time: a few minutes)"
bash scripts/build.sh >/dev/null
ws=$(mktemp -d /tmp/agentcage-demo-XXXXXX)
cp README.md scripts/demo-agent.sh "$ws/"
echo "== agentcage trace --profile default --workspace $ws -o text -- sh demo-agent.sh"
cd "$ws"
AWS_SECRET_ACCESS_KEY=demo-not-a-real-key GITHUB_TOKEN=demo-not-a-real-token \
  "$OLDPWD/build/agent/agentcage" trace --profile default --workspace "$ws" -o text -- sh demo-agent.sh
