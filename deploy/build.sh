#!/bin/sh
# Builds the static sesrelay binary into ./sesrelay at the repository root.
#
# The container image (Dockerfile) and CI both run this script, so the
# binary that ships and the binary that is tested come from one command.
# VERSION is stamped into main.version; it defaults to `git describe`
# (the image build has no .git and passes VERSION as a build argument).
set -eu

cd "$(dirname "$0")/.."

if [ -z "${VERSION:-}" ]; then
	VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
fi

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o sesrelay ./cmd/sesrelay
