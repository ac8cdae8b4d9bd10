#!/usr/bin/env bash
# Installs what the tests need on a fresh machine (Debian with Go and Node):
# swaks, promtool and haproxy from apt, the pinned npm packages of the end-to-end
# suite. Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v swaks >/dev/null || need_apt+=(swaks)
# swaks' TLS (--tls, --tlsc) needs these Perl modules, only recommended by its package.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || need_apt+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v haproxy >/dev/null || need_apt+=(haproxy) # relay: TestProxyBehindHAProxy
if [ ${#need_apt[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ -f e2e/package.json ]; then
	if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
		(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
	fi
fi
go mod download
