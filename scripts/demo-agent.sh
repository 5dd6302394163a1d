#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A stand-in for an AI agent's tool calls: ordinary work, then what a prompt-injected agent
# would try. Used by the quick start.
echo "agent: listing the workspace"; ls >/dev/null
echo "agent: running a tool"; uname -r
echo "agent: trying to read a secret"; cat /etc/shadow >/dev/null 2>&1 && echo "agent: read /etc/shadow" || echo "agent: blocked"
echo "agent: leaving a background process behind"; (sleep 600 &)
