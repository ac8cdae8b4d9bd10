#!/usr/bin/env bash
# sesrelay end-to-end suite: the real binary between real SMTP clients
# (swaks, Python smtplib, nodemailer) and an SES v2 emulator
# (aws-ses-v2-local) behind a recording proxy, with DKIM checked by an
# independent verifier (mailauth). Everything listens on 127.0.0.1 on ports
# chosen at run time; every process started here is stopped by its pid.
#
#   bash e2e/run.sh            (make e2e)
#   E2E_KEEP=1 bash e2e/run.sh keeps the temporary directory
#   E2E_ONLY=regex             runs only the cases whose name matches
#
# Prints "e2e: N passed, M failed" and exits non-zero on any failure, after
# printing the relay's log.
set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$E2E_DIR")
cd "$ROOT" || exit 1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sesrelay-e2e.XXXXXX")
PIDS=()
PGIDS=()
PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
SETUP_FAILED=0

log() { printf '%s\n' "$*"; }

stop_pid() { # pid: TERM, up to 5 s, then KILL
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

stop_group() { # process group we created with setsid (go run and its child)
	local pgid=$1 i
	# SIGINT: go run ignores it and waits for the relay, which drains and
	# exits on it; go run then removes its build directory.
	kill -INT -- "-$pgid" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 -- "-$pgid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pgid" 2>/dev/null
	wait "$pgid" 2>/dev/null
	return 0
}

print_logs() {
	local f
	for f in "$TMP"/relay.log "$TMP"/readme/relay.log; do
		[ -s "$f" ] || continue
		log "===== $f (last 300 lines)"
		tail -n 300 "$f"
	done
	for f in "$TMP"/emulator.log "$TMP"/proxy.log; do
		[ -s "$f" ] || continue
		log "===== $f (last 40 lines)"
		tail -n 40 "$f"
	done
}

cleanup() {
	local rc=$?
	local i
	for ((i = ${#PGIDS[@]} - 1; i >= 0; i--)); do stop_group "${PGIDS[i]}"; done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
	if [ "$rc" -ne 0 ] || [ "$FAILED" -gt 0 ] || [ "$SETUP_FAILED" -ne 0 ]; then
		print_logs
		[ "$rc" -ne 0 ] || rc=1
	fi
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		log "e2e: kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	SETUP_FAILED=1
	log "e2e: setup failed: $*"
	log "e2e: $PASSED passed, $((FAILED + 1)) failed"
	exit 1
}

# wait_port PORT SECONDS [PID]: until something accepts on 127.0.0.1:PORT;
# fails early when PID (the process that should listen) has exited.
wait_port() {
	local port=$1 secs=$2 pid=${3:-} end=$((SECONDS + $2))
	while [ "$SECONDS" -lt "$end" ]; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
		sleep 0.1
	done
	return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_ports() { # N: prints N distinct free loopback ports
	python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()' "$1"
}

# ---------------------------------------------------------------- setup

command -v node >/dev/null || die "node is not installed"
command -v swaks >/dev/null || die "swaks is not installed (bash scripts/deps.sh)"
command -v openssl >/dev/null || die "openssl is not installed"
if [ ! -d "$E2E_DIR/node_modules/aws-ses-v2-local" ] || [ ! -d "$E2E_DIR/node_modules/mailauth" ] || [ ! -d "$E2E_DIR/node_modules/nodemailer" ]; then
	(cd "$E2E_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in e2e/ failed"
fi

log "e2e: building sesrelay with deploy/build.sh (the container image's build command)"
BIN=$TMP/sesrelay
timeout 300 sh deploy/build.sh || die "deploy/build.sh failed"
mv sesrelay "$BIN" || die "deploy/build.sh produced no ./sesrelay"

read -r P_EMU P_PROXY P_STARTTLS P_IMPLICIT P_ADMIN P_UNSUB < <(free_ports 6)

EMU_URL=http://127.0.0.1:$P_EMU
PROXY_URL=http://127.0.0.1:$P_PROXY
SES_LOG=$TMP/ses-requests.jsonl
: >"$SES_LOG"

EMU_PID=
start_emulator() {
	env -u SMTP_TRANSPORT node "$E2E_DIR/node_modules/.bin/aws-ses-v2-local" --host 127.0.0.1 --port "$P_EMU" >>"$TMP/emulator.log" 2>&1 &
	EMU_PID=$!
	PIDS+=("$EMU_PID")
	wait_port "$P_EMU" 20 "$EMU_PID"
}
start_emulator || die "the SES emulator did not start on port $P_EMU"

node "$E2E_DIR/lib/ses-proxy.js" --port "$P_PROXY" --upstream "$EMU_URL" --log "$SES_LOG" >>"$TMP/proxy.log" 2>&1 &
PIDS+=($!)
wait_port "$P_PROXY" 20 $! || die "the recording proxy did not start on port $P_PROXY"

proxy_mode() { curl -fsS -m 5 -X POST --data "$1" "$PROXY_URL/__e2e/mode" >/dev/null; }

# Credentials and DKIM keys.
ALPHA_USER=alpha-app ALPHA_PW=alpha-e2e-secret-1
BETA_USER=beta-app BETA_PW=beta-e2e-secret-2
ALPHA_HASH=$(printf %s "$ALPHA_PW" | "$BIN" hash-password) || die "hash-password failed"
BETA_HASH=$(printf %s "$BETA_PW" | "$BIN" hash-password) || die "hash-password failed"
GAMMA_USER=gamma-app GAMMA_PW=gamma-e2e-secret-3
GAMMA_HASH=$(printf %s "$GAMMA_PW" | "$BIN" hash-password) || die "hash-password failed"
# The built-in unsubscribe endpoint: HTTPS with a self-signed certificate
# for 127.0.0.1, and tenant gamma's token secret.
UNSUB_CERT=$TMP/unsub-cert.pem UNSUB_KEY=$TMP/unsub-key.pem UNSUB_SECRET=$TMP/unsub-secret.key
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$UNSUB_KEY" -out "$UNSUB_CERT" 2>/dev/null || die "openssl: unsubscribe certificate"
head -c 32 /dev/urandom | base64 >"$UNSUB_SECRET" || die "unsubscribe secret"
chmod 600 "$UNSUB_KEY" "$UNSUB_SECRET"
DELTA_USER=delta-app DELTA_PW=delta-e2e-secret-4
DELTA_HASH=$(printf %s "$DELTA_PW" | "$BIN" hash-password) || die "hash-password failed"
RSA_KEY=$TMP/dkim-rsa.pem
ED_KEY=$TMP/dkim-ed25519.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RSA_KEY" 2>/dev/null || die "openssl: RSA key"
openssl genpkey -algorithm ed25519 -out "$ED_KEY" 2>/dev/null || die "openssl: Ed25519 key"
chmod 600 "$RSA_KEY" "$ED_KEY"

# `sesrelay dkim keygen` (DKIM issue): when the command exists, tenant beta
# signs with a key it made and the record it printed is what the verifier
# is given.
KEYGEN_KEY=$TMP/dkim-keygen.pem
KEYGEN=missing
BETA_DKIM=
if "$BIN" dkim keygen --domain beta.example.org --selector kg --algorithm ed25519 --out "$KEYGEN_KEY" >"$TMP/keygen.txt" 2>&1; then
	KEYGEN=ok
	BETA_DKIM="
    dkim:
      - domain: beta.example.org
        selector: kg
        key_file: $KEYGEN_KEY"
elif ! grep -q 'unknown command' "$TMP/keygen.txt"; then
	KEYGEN=failed
fi

MAX_BYTES=1048576
cat >"$TMP/relay.yaml" <<EOF
server:
  hostname: relay.e2e.test
  listeners:
    - address: "127.0.0.1:$P_STARTTLS"
      tls: starttls
    - address: "127.0.0.1:$P_IMPLICIT"
      tls: implicit
  tls:
    self_signed: true
  max_message_bytes: $MAX_BYTES
  max_recipients: 10
admin:
  address: "127.0.0.1:$P_ADMIN"
log:
  level: info
  format: json
delivery:
  sender: ses
ses:
  region: us-east-1
  endpoint: "$PROXY_URL"
  timeout: 20s
  max_attempts: 1
suppression:
  dir: $TMP/suppression
unsubscribe_server:
  address: "127.0.0.1:$P_UNSUB"
  tls:
    cert_file: $UNSUB_CERT
    key_file: $UNSUB_KEY
tenants:
  - name: alpha
    users:
      - username: $ALPHA_USER
        password_hash: '$ALPHA_HASH'
    domains: ["alpha.example.com", "*.alpha.example.com"]
    configuration_set: alpha-tx
    tags:
      stream: transactional
      team: alpha
    dkim:
      - domain: rsa.alpha.example.com
        selector: s2048
        key_file: $RSA_KEY
      - domain: ed.alpha.example.com
        selector: sed
        key_file: $ED_KEY
  - name: beta
    users:
      - username: $BETA_USER
        password_hash: '$BETA_HASH'
    domains: ["beta.example.org"]
    configuration_set: beta-marketing
    tags:
      stream: marketing$BETA_DKIM
  - name: gamma
    users:
      - username: $GAMMA_USER
        password_hash: '$GAMMA_HASH'
    domains: ["gamma.example.org"]
    list_unsubscribe:
      mode: add
      url: "https://127.0.0.1:$P_UNSUB/u/{token}"
      secret_file: $UNSUB_SECRET
      list_id_header: X-List
  - name: delta
    delivery_mode: fallback
    users:
      - username: $DELTA_USER
        password_hash: '$DELTA_HASH'
    domains: ["delta.example.com"]
    configuration_set: delta-tx
queue:
  dir: $TMP/queue
  min_backoff: 2s
  max_backoff: 10s
EOF

"$BIN" check --config "$TMP/relay.yaml" >"$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; die "sesrelay check refused the generated configuration"; }

env AWS_ACCESS_KEY_ID=AKIDE2ETEST AWS_SECRET_ACCESS_KEY=e2e-secret AWS_REGION=us-east-1 \
	AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
	"$BIN" serve --config "$TMP/relay.yaml" >"$TMP/relay.log" 2>&1 &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_port "$P_STARTTLS" 20 "$RELAY_PID" && wait_port "$P_IMPLICIT" 10 "$RELAY_PID" ||
	die "the relay did not listen on $P_STARTTLS and $P_IMPLICIT"
log "e2e: emulator :$P_EMU, proxy :$P_PROXY, relay starttls :$P_STARTTLS implicit :$P_IMPLICIT admin :$P_ADMIN"

# ---------------------------------------------------------------- clients
# Each sets REPLY to "<code> <text>" of the reply that decided the
# transaction, or "ERROR ..." when the client could not talk to the relay.

REPLY=
RUN_ID=$$-$RANDOM
marker() { printf 'e2e-%s-%s' "$1" "$RUN_ID"; }

swaks_send() { # swaks arguments (server, TLS, auth, envelope, data)
	local out=$TMP/swaks.out
	timeout 60 swaks --suppress-data --timeout 30 "$@" >"$out" 2>&1
	REPLY=$(sed -nE 's/^ *(<-|<~|<\*\*|<~\*) +//p' "$out" | grep -Ev '^221' | tail -n 1)
	[ -n "$REPLY" ] || REPLY="ERROR $(tail -n 3 "$out" | tr '\n' ' ')"
	USED=$(sed -nE 's/^ *(->|~>) +(STARTTLS|AUTH [A-Z]+).*/\2/p' "$out" | tr '\n' ' ')
	cp "$out" "$TMP/last-client.out"
}

py_send() {
	local out
	out=$(timeout 60 python3 "$E2E_DIR/lib/smtplib_send.py" "$@" 2>&1)
	REPLY=$(printf '%s\n' "$out" | sed -n 's/^REPLY //p' | tail -n 1)
	[ -n "$REPLY" ] || REPLY="ERROR $out"
	printf '%s\n' "$out" >"$TMP/last-client.out"
}

nm_send() {
	local out
	out=$(cd "$E2E_DIR" && timeout 60 node lib/nodemailer-send.js "$@" 2>&1)
	REPLY=$(printf '%s\n' "$out" | sed -n 's/^REPLY //p' | tail -n 1)
	[ -n "$REPLY" ] || REPLY="ERROR $out"
	USED=$(printf '%s\n' "$out" | sed -n 's/^USED //p' | tail -n 1)
	printf '%s\n' "$out" >"$TMP/last-client.out"
}

# expect_used WORDS: the client's protocol log shows these commands in this
# order (swaks' transcript, nodemailer's logger), e.g. "STARTTLS AUTH LOGIN".
USED=
expect_used() {
	[[ " $USED " == *" $1 "* ]] || problem "the client used \"$USED\", want \"$1\""
	USED=
}

queued_id() { printf '%s' "${REPLY##*queued as }" | tr -d '\r '; }

check() { (cd "$E2E_DIR" && timeout 30 node lib/check.js "$@"); }

# ---------------------------------------------------------------- cases

CASE_OK=1
CASE_NOTE=
problem() { log "  FAIL: $*"; CASE_OK=0; }
expect_reply() { # regex: REPLY must match
	if [[ ! "$REPLY" =~ $1 ]]; then problem "reply \"$REPLY\", want /$1/"; fi
}

run_case() { # name function
	local name=$1 fn=$2
	if [ -n "${E2E_ONLY:-}" ] && ! [[ "$name" =~ $E2E_ONLY ]]; then return; fi
	CASE_OK=1
	CASE_NOTE=
	local start=$SECONDS
	log "--- $name"
	"$fn"
	local rc=$?
	if [ "$rc" = 77 ]; then
		SKIPPED=$((SKIPPED + 1))
		log "SKIP  $name: $CASE_NOTE"
	elif [ "$CASE_OK" = 1 ] && [ "$rc" = 0 ]; then
		PASSED=$((PASSED + 1))
		log "PASS  $name ($((SECONDS - start))s)${CASE_NOTE:+: $CASE_NOTE}"
	else
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("$name")
		log "FAIL  $name ($((SECONDS - start))s)"
		[ -f "$TMP/last-client.out" ] && sed 's/^/  client: /' "$TMP/last-client.out" | tail -n 12
	fi
	rm -f "$TMP/last-client.out"
}

ALPHA_TAGS=stream=transactional,team=alpha,tenant=alpha
BETA_TAGS=stream=marketing,tenant=beta

# Delivery with each client: the reply carries SES's MessageId; SES got the
# raw message, every envelope recipient (an envelope-only Bcc included, and
# not written in the message), the tenant's configuration set and tags; the
# emulator stored it.

case_swaks_starttls_login() {
	local m; m=$(marker swaks-starttls)
	swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth LOGIN --auth-user "$ALPHA_USER" --auth-password "$ALPHA_PW" \
		--from app@alpha.example.com --to customer@example.net,hidden-bcc@example.net \
		--header "To: customer@example.net" --header "Subject: $m" --body "Delivery over STARTTLS with AUTH LOGIN."
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	expect_used "STARTTLS AUTH LOGIN"
	check sent --log "$SES_LOG" --marker "$m" --to customer@example.net,hidden-bcc@example.net \
		--config-set alpha-tx --tags "$ALPHA_TAGS,from_domain=alpha_example_com" --absent-text hidden-bcc@ \
		--absent-header DKIM-Signature --queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_swaks_implicit_plain() {
	local m; m=$(marker swaks-implicit)
	swaks_send --server "127.0.0.1:$P_IMPLICIT" --tlsc --auth PLAIN --auth-user "$BETA_USER" --auth-password "$BETA_PW" \
		--from news@beta.example.org --to reader@example.net --header "Subject: $m" --body "Delivery over implicit TLS with AUTH PLAIN."
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	expect_used "AUTH PLAIN"
	check sent --log "$SES_LOG" --marker "$m" --to reader@example.net --config-set beta-marketing \
		--tags "$BETA_TAGS,from_domain=beta_example_org" --queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_python_starttls_plain() {
	local m; m=$(marker python-starttls)
	py_send --port "$P_STARTTLS" --mode starttls --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from billing@alpha.example.com --rcpt customer@example.net --rcpt audit@example.net \
		--header "Bcc: audit@example.net" --subject "$m"
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	check sent --log "$SES_LOG" --marker "$m" --to customer@example.net,audit@example.net --config-set alpha-tx \
		--tags "$ALPHA_TAGS,from_domain=alpha_example_com" --absent-header Bcc --absent-text audit@ \
		--queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_python_implicit_login() {
	local m; m=$(marker python-implicit)
	py_send --port "$P_IMPLICIT" --mode implicit --auth LOGIN --user "$BETA_USER" --password "$BETA_PW" \
		--mail-from news@beta.example.org --rcpt reader@example.net --subject "$m"
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	check sent --log "$SES_LOG" --marker "$m" --to reader@example.net --config-set beta-marketing \
		--tags "$BETA_TAGS,from_domain=beta_example_org" --queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_nodemailer_implicit_plain() {
	local m; m=$(marker nodemailer-implicit)
	nm_send --port "$P_IMPLICIT" --mode implicit --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--from app@alpha.example.com --to customer@example.net --bcc hidden-bcc@example.net --subject "$m"
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	expect_used "AUTH PLAIN"
	check sent --log "$SES_LOG" --marker "$m" --to customer@example.net,hidden-bcc@example.net --config-set alpha-tx \
		--tags "$ALPHA_TAGS,from_domain=alpha_example_com" --absent-text hidden-bcc@ \
		--queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_nodemailer_starttls_login() {
	local m; m=$(marker nodemailer-starttls)
	nm_send --port "$P_STARTTLS" --mode starttls --auth LOGIN --user "$BETA_USER" --password "$BETA_PW" \
		--from news@beta.example.org --to reader@example.net --subject "$m"
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	expect_used "STARTTLS AUTH LOGIN"
	check sent --log "$SES_LOG" --marker "$m" --to reader@example.net --config-set beta-marketing \
		--tags "$BETA_TAGS,from_domain=beta_example_org" --queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_wrong_password() {
	local m; m=$(marker wrong-password)
	swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth LOGIN --auth-user "$BETA_USER" --auth-password not-the-password \
		--from news@beta.example.org --to reader@example.net --header "Subject: $m"
	expect_reply '^535 5\.7\.8'
	check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
}

# From spoofing: tenant beta may not send as tenant alpha.

case_spoof_envelope() {
	local m; m=$(marker spoof-envelope)
	swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth PLAIN --auth-user "$BETA_USER" --auth-password "$BETA_PW" \
		--from ceo@alpha.example.com --to victim@example.net --header "Subject: $m"
	expect_reply '^550 5\.7\.1'
	check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
}

# Tenant policy (From alignment): the envelope is beta's, the From header
# names alpha's domain.
case_spoof_header_from() {
	local m; m=$(marker spoof-header)
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$BETA_USER" --password "$BETA_PW" \
		--mail-from bounce@beta.example.org --from-header "CEO <ceo@alpha.example.com>" --rcpt victim@example.net --subject "$m"
	expect_reply '^550 5\.7\.1'
	check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
}

# X-SES-* injection (tenant policy, header hygiene): SES must receive only
# the tenant's own settings.
case_xses_tags_stripped() {
	local m; m=$(marker xses-tags)
	py_send --port "$P_STARTTLS" --auth LOGIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from app@alpha.example.com --rcpt customer@example.net --subject "$m" \
		--header "X-SES-MESSAGE-TAGS: stream=hijacked, tenant=beta, campaign=injected" \
		--header "X-SES-RETURN-PATH-ARN: arn:aws:ses:us-east-1:123456789012:identity/beta.example.org" \
		--header "X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:123456789012:identity/beta.example.org"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --config-set alpha-tx --tags "$ALPHA_TAGS,from_domain=alpha_example_com" \
		--absent-header 'X-SES-*' --absent-text hijacked || CASE_OK=0
}

case_xses_configuration_set() {
	local m; m=$(marker xses-configset)
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from app@alpha.example.com --rcpt customer@example.net --subject "$m" \
		--header "X-SES-CONFIGURATION-SET: beta-marketing"
	if [[ "$REPLY" =~ ^5[0-9][0-9]\  ]]; then
		CASE_NOTE="refused: $REPLY"
		check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
	else
		expect_reply '^250 '
		CASE_NOTE="accepted with the header removed"
		check sent --log "$SES_LOG" --marker "$m" --config-set alpha-tx --tags "$ALPHA_TAGS,from_domain=alpha_example_com" \
			--absent-header 'X-SES-*' || CASE_OK=0
	fi
}

# Over the size limit: refused at MAIL when the client declares SIZE
# (smtplib), at the end of DATA when it does not (swaks).
case_oversize_declared() {
	local m; m=$(marker oversize-mail)
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from app@alpha.example.com --rcpt customer@example.net --subject "$m" --body-bytes $((MAX_BYTES * 2))
	expect_reply '^552 5\.3\.4'
	check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
}

case_oversize_data() {
	local m; m=$(marker oversize-data)
	python3 - "$TMP/big.eml" "$m" "$((MAX_BYTES + 4096))" <<'EOF'
import sys
path, marker, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
head = ("From: app@alpha.example.com\r\nTo: customer@example.net\r\nSubject: %s\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <%s@alpha.example.com>\r\n\r\n") % (marker, marker)
line = "x" * 76 + "\r\n"
with open(path, "w", newline="") as f:
    f.write(head + line * (size // len(line) + 1))
EOF
	swaks_send --server "127.0.0.1:$P_IMPLICIT" --tlsc --auth LOGIN --auth-user "$ALPHA_USER" --auth-password "$ALPHA_PW" \
		--from app@alpha.example.com --to customer@example.net --data "@$TMP/big.eml"
	expect_reply '^552 5\.3\.4'
	check none --log "$SES_LOG" --marker "$m" || CASE_OK=0
}

# SES unavailable: 451, nothing lost; the client's retry of the same
# message succeeds once SES is back.
case_ses_503_then_retry() {
	local m; m=$(marker ses-503)
	proxy_mode unavailable || { problem "cannot switch the proxy"; return 1; }
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from app@alpha.example.com --rcpt customer@example.net --subject "$m" --save "$TMP/retry.eml"
	proxy_mode up
	expect_reply '^451 4\.'
	check count --log "$SES_LOG" --marker "$m" --status 503 --expect 1 || CASE_OK=0
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from app@alpha.example.com --rcpt customer@example.net --subject "$m" --eml "$TMP/retry.eml"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --to customer@example.net --config-set alpha-tx \
		--queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

case_emulator_stopped_then_retry() {
	local m; m=$(marker emulator-down)
	stop_pid "$EMU_PID"
	python3 - "$TMP/down.eml" "$m" <<'EOF'
import sys
path, marker = sys.argv[1], sys.argv[2]
with open(path, "w", newline="") as f:
    f.write("From: app@alpha.example.com\r\nTo: customer@example.net\r\nSubject: %s\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <%s@alpha.example.com>\r\n\r\n"
            "Sent while SES is down, then again.\r\n" % (marker, marker))
EOF
	swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth LOGIN --auth-user "$ALPHA_USER" --auth-password "$ALPHA_PW" \
		--from app@alpha.example.com --to customer@example.net --data "@$TMP/down.eml"
	expect_reply '^451 4\.'
	start_emulator || { problem "the emulator did not restart"; return 1; }
	swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth LOGIN --auth-user "$ALPHA_USER" --auth-password "$ALPHA_PW" \
		--from app@alpha.example.com --to customer@example.net --data "@$TMP/down.eml"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --to customer@example.net --config-set alpha-tx \
		--queued-id "$(queued_id)" --store "$EMU_URL" || CASE_OK=0
}

# Fallback mode (store-and-forward queue, docs/queue.md): tenant delta's
# messages go to SES at once; while every SES call fails (503 and
# throttling, E2E_OUTAGE_SECONDS, 60 by default) the relay queues them and
# still answers 250. Once SES is back every message arrives exactly once.
case_fallback_outage() {
	local n=${E2E_FALLBACK_MESSAGES:-200} outage=${E2E_OUTAGE_SECONDS:-60}
	local tag=fallback-$RUN_ID i m start=$SECONDS bad=0
	proxy_mode failing || { problem "cannot switch the proxy"; return 1; }
	for ((i = 0; i < n; i++)); do
		m="e2e-$tag-$i-end"
		case $((i % 3)) in
		0) swaks_send --server "127.0.0.1:$P_STARTTLS" --tls --auth LOGIN --auth-user "$DELTA_USER" --auth-password "$DELTA_PW" \
			--from app@delta.example.com --to customer@example.net --header "Subject: $m" --body "Fallback message $i." ;;
		1) py_send --port "$P_IMPLICIT" --mode implicit --auth PLAIN --user "$DELTA_USER" --password "$DELTA_PW" \
			--mail-from app@delta.example.com --rcpt customer@example.net --subject "$m" ;;
		2) nm_send --port "$P_STARTTLS" --mode starttls --auth PLAIN --user "$DELTA_USER" --password "$DELTA_PW" \
			--from app@delta.example.com --to customer@example.net --subject "$m" ;;
		esac
		if [[ ! "$REPLY" =~ ^250\ 2\.0\.0\ Ok:\ queued\ as\ [0-9a-f]+\ \(SES\ unavailable,\ will\ retry\) ]]; then
			bad=$((bad + 1))
			[ "$bad" -le 3 ] && problem "message $i: reply \"$REPLY\", want 250 queued (SES unavailable, will retry)"
		fi
	done
	[ "$bad" -eq 0 ] || problem "$bad of $n messages did not get the fallback 250"
	local left=$((outage - (SECONDS - start)))
	[ "$left" -gt 0 ] && sleep "$left"
	proxy_mode up || { problem "cannot switch the proxy back"; return 1; }
	CASE_NOTE="$n messages during a $((SECONDS - start)) s outage"
	# Up to 90 s: a worker may be in a backoff of up to queue.max_backoff.
	local end=$((SECONDS + 90)) out
	while :; do
		out=$(python3 "$E2E_DIR/lib/count_markers.py" "$SES_LOG" "e2e-$tag-" "$n") && break
		if [ "$SECONDS" -ge "$end" ]; then
			problem "not every message arrived: $out"
			return 1
		fi
		sleep 1
	done
	[[ "$out" == *" duplicates=0 "* ]] || problem "some messages arrived more than once: $out"
	CASE_NOTE="$CASE_NOTE; $out"
}

# DKIM: the relay signs with the tenant's key; mailauth verifies what SES
# received, with the public keys from a local map (no DNS).
dkim_verify() { # raw-file expected-domain expected-algo
	(cd "$E2E_DIR" && timeout 30 node lib/dkim-verify.js --raw "$1" \
		--key "rsa.alpha.example.com:s2048:$RSA_KEY" --key "ed.alpha.example.com:sed:$ED_KEY" \
		--expect-domain "$2" --expect-algo "$3")
	local rc=$?
	case $rc in
	0) ;;
	3) problem "the relay did not sign a message from $2 although the tenant has a key for it" ;;
	*) CASE_OK=0 ;;
	esac
}

case_dkim_rsa() {
	local m; m=$(marker dkim-rsa)
	nm_send --port "$P_STARTTLS" --mode starttls --auth PLAIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--from app@rsa.alpha.example.com --from-header "Alpha App <app@rsa.alpha.example.com>" --to customer@example.net \
		--subject "$m" --header "List-Unsubscribe: <https://rsa.alpha.example.com/u/1>" \
		--header "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --tracking-disabled --raw-out "$TMP/dkim-rsa.eml" \
		--tags "$ALPHA_TAGS,from_domain=rsa_alpha_example_com" || { CASE_OK=0; return 1; }
	dkim_verify "$TMP/dkim-rsa.eml" rsa.alpha.example.com rsa-sha256
}

case_dkim_ed25519() {
	local m; m=$(marker dkim-ed25519)
	# From a subdomain of the key's domain (nearest parent key), with a
	# client's own DKIM-Signature that the relay must replace.
	py_send --port "$P_IMPLICIT" --mode implicit --auth LOGIN --user "$ALPHA_USER" --password "$ALPHA_PW" \
		--mail-from news@news.ed.alpha.example.com --rcpt customer@example.net --subject "$m" \
		--header "DKIM-Signature: v=1; a=rsa-sha256; d=news.ed.alpha.example.com; s=client; h=from; bh=AAAA; b=AAAA"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --tracking-disabled --raw-out "$TMP/dkim-ed.eml" || { CASE_OK=0; return 1; }
	dkim_verify "$TMP/dkim-ed.eml" ed.alpha.example.com ed25519-sha256
}

case_dkim_keygen() {
	case $KEYGEN in
	missing)
		CASE_NOTE="sesrelay dkim keygen is not there yet"
		return 77
		;;
	failed)
		problem "sesrelay dkim keygen --domain beta.example.org --selector kg --algorithm ed25519 --out FILE failed:"
		sed 's/^/  keygen: /' "$TMP/keygen.txt"
		return 1
		;;
	esac
	[ "$(stat -c %a "$KEYGEN_KEY")" = 600 ] || problem "the key file's mode is $(stat -c %a "$KEYGEN_KEY"), want 600"
	local m; m=$(marker dkim-keygen)
	py_send --port "$P_STARTTLS" --auth PLAIN --user "$BETA_USER" --password "$BETA_PW" \
		--mail-from news@beta.example.org --rcpt reader@example.net --subject "$m"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	check sent --log "$SES_LOG" --marker "$m" --raw-out "$TMP/dkim-kg.eml" || { CASE_OK=0; return 1; }
	(cd "$E2E_DIR" && timeout 30 node lib/dkim-verify.js --raw "$TMP/dkim-kg.eml" \
		--record "beta.example.org:kg:$TMP/keygen.txt" --expect-domain beta.example.org --expect-algo ed25519-sha256) || CASE_OK=0
}

# The README's run command on the embedded development configuration, in a
# copy of the source tree so that ./outbox is not left in the repository.
# One-click unsubscribe with the built-in endpoint (RFC 8058): tenant gamma
# (list_unsubscribe add) sends a list message to three recipients through
# the relay; the https URL of each recipient's List-Unsubscribe is taken
# from what SES received and used with curl exactly as a mailbox provider
# does (POST, form body List-Unsubscribe=One-Click, no cookies, no
# redirects followed). A GET (what link scanners do) and a POST with an
# altered token record nothing; the next list message reaches only the
# recipients who did not unsubscribe, and mail without a list still reaches
# everyone.
UNSUB_CURL=(curl -sS -m 10 --cacert "$UNSUB_CERT" --max-redirs 0 -o "$TMP/unsub-body.out" -w '%{http_code}')

gamma_send() { # marker list (empty: none) recipients...
	local m=$1 list=$2 r
	shift 2
	local args=()
	for r in "$@"; do args+=(--rcpt "$r"); done
	[ -n "$list" ] && args+=(--header "X-List: $list")
	py_send --port "$P_STARTTLS" --mode starttls --auth PLAIN --user "$GAMMA_USER" --password "$GAMMA_PW" \
		--mail-from news@gamma.example.org --subject "$m" --body "List mail with one-click unsubscribe." "${args[@]}"
}

unsub_dest() { (cd "$E2E_DIR" && node lib/unsubscribe.js dest --log "$SES_LOG" --marker "$1" | tr '\n' ' ' | sed 's/ $//'); }

case_unsubscribe_one_click() {
	local m1 m2 m3 m4 code url_ann url_bob url_carl bad
	m1=$(marker unsub-first)
	gamma_send "$m1" monthly ann@example.net bob@example.net carl@example.net
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+,ses-[0-9]+,ses-[0-9]+'
	url_ann=$(cd "$E2E_DIR" && node lib/unsubscribe.js url --log "$SES_LOG" --marker "$m1" --to ann@example.net) || problem "no one-click URL for ann: $url_ann"
	url_bob=$(cd "$E2E_DIR" && node lib/unsubscribe.js url --log "$SES_LOG" --marker "$m1" --to bob@example.net) || problem "no one-click URL for bob: $url_bob"
	url_carl=$(cd "$E2E_DIR" && node lib/unsubscribe.js url --log "$SES_LOG" --marker "$m1" --to carl@example.net) || problem "no one-click URL for carl: $url_carl"
	[[ "$url_ann" == "https://127.0.0.1:$P_UNSUB/u/"* ]] || { problem "URL $url_ann is not the built-in endpoint"; return 1; }

	# A link scanner's GET: the page with the button, nothing recorded.
	code=$("${UNSUB_CURL[@]}" "$url_carl") || problem "GET failed"
	[ "$code" = 200 ] || problem "GET: $code, want 200"
	grep -q 'c\*\*\*@example.net' "$TMP/unsub-body.out" && grep -q 'method="post"' "$TMP/unsub-body.out" ||
		problem "the GET page lacks the masked address or the button: $(head -c 300 "$TMP/unsub-body.out")"

	# An altered token: one character of bob's token replaced.
	bad=$(printf '%s' "$url_bob" | python3 -c 'import sys; u = sys.stdin.read(); i = len(u) - 30; print(u[:i] + ("A" if u[i] != "A" else "B") + u[i+1:])')
	code=$("${UNSUB_CURL[@]}" -X POST -H 'Content-Type: application/x-www-form-urlencoded' -d 'List-Unsubscribe=One-Click' "$bad") || problem "POST failed"
	[ "$code" = 400 ] || problem "POST with an altered token: $code, want 400"

	# The provider's one-click POST for ann.
	code=$("${UNSUB_CURL[@]}" -X POST -H 'Content-Type: application/x-www-form-urlencoded' -d 'List-Unsubscribe=One-Click' "$url_ann") || problem "POST failed"
	[ "$code" = 200 ] || problem "one-click POST: $code, want 200 ($(cat "$TMP/unsub-body.out"))"

	# The next list message: ann is in no SES request, bob and carl are.
	m2=$(marker unsub-second)
	gamma_send "$m2" monthly ann@example.net bob@example.net carl@example.net
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+,ses-[0-9]+$'
	[ "$(unsub_dest "$m2")" = "bob@example.net carl@example.net" ] || problem "second list message went to \"$(unsub_dest "$m2")\", want bob and carl"

	# Only ann: nothing reaches SES, and the reply says so.
	m3=$(marker unsub-only-ann)
	gamma_send "$m3" monthly ann@example.net
	expect_reply '^250 2\.0\.0 Ok: no recipient was sent'
	check none --log "$SES_LOG" --marker "$m3" || CASE_OK=0

	# Transactional mail (no list) to ann is sent.
	m4=$(marker unsub-transactional)
	gamma_send "$m4" "" ann@example.net
	expect_reply '^250 2\.0\.0 Ok: queued as ses-[0-9]+'
	[ "$(unsub_dest "$m4")" = "ann@example.net" ] || problem "transactional mail went to \"$(unsub_dest "$m4")\", want ann"
	return 0
}

case_readme_run() {
	local p
	for p in 2587 2465 9090; do
		if port_busy "$p"; then
			CASE_NOTE="127.0.0.1:$p is busy: cannot run the README's command on its fixed ports"
			return 77
		fi
	done
	local dir=$TMP/readme
	mkdir -p "$dir/src"
	tar -C "$ROOT" --exclude=./.git --exclude=./e2e/node_modules --exclude=./outbox --exclude=./bin -cf - . | tar -C "$dir/src" -xf - ||
		{ problem "cannot copy the source tree"; return 1; }
	mkdir -p "$dir/gotmp"
	(cd "$dir/src" && GOTMPDIR=$dir/gotmp exec setsid go run ./cmd/sesrelay serve) >"$dir/relay.log" 2>&1 &
	local pid=$!
	PGIDS+=("$pid")
	if ! wait_port 2587 120 "$pid" || ! wait_port 2465 10 "$pid"; then
		problem "go run ./cmd/sesrelay serve did not listen on 2587 and 2465"
		return 1
	fi
	local m; m=$(marker readme)
	swaks_send --server 127.0.0.1:2587 --tls --auth LOGIN --auth-user demo --auth-password demo-password \
		--from app@example.com --to someone@example.org --header "Subject: $m"
	expect_reply '^250 2\.0\.0 Ok: queued as '
	local i found=
	for i in $(seq 50); do
		found=$(grep -l -- "$m" "$dir/src/outbox/"*.eml 2>/dev/null | head -n 1)
		[ -n "$found" ] && break
		sleep 0.1
	done
	[ -n "$found" ] || problem "no .eml with $m in ./outbox"
	[ -n "$found" ] && [ -f "${found%.eml}.json" ] || problem "no .json beside the .eml in ./outbox"
	stop_group "$pid"
	return 0
}

run_case "delivery: swaks STARTTLS + AUTH LOGIN, envelope-only Bcc" case_swaks_starttls_login
run_case "delivery: swaks implicit TLS + AUTH PLAIN" case_swaks_implicit_plain
run_case "delivery: smtplib STARTTLS + AUTH PLAIN, Bcc header stripped" case_python_starttls_plain
run_case "delivery: smtplib implicit TLS + AUTH LOGIN" case_python_implicit_login
run_case "delivery: nodemailer implicit TLS + AUTH PLAIN, Bcc" case_nodemailer_implicit_plain
run_case "delivery: nodemailer STARTTLS + AUTH LOGIN" case_nodemailer_starttls_login
run_case "auth: wrong password -> 535 5.7.8" case_wrong_password
run_case "spoofing: envelope MAIL FROM of another tenant -> 550 5.7.1" case_spoof_envelope
run_case "spoofing: header From of another tenant -> 550 5.7.1 (tenant policy)" case_spoof_header_from
run_case "injection: X-SES-MESSAGE-TAGS and X-SES-*-ARN stripped (tenant policy)" case_xses_tags_stripped
run_case "injection: X-SES-CONFIGURATION-SET of another tenant never reaches SES (tenant policy)" case_xses_configuration_set
run_case "size: over max_message_bytes with SIZE= -> 552" case_oversize_declared
run_case "size: over max_message_bytes in DATA -> 552" case_oversize_data
run_case "ses down: 503 -> 451, retry succeeds" case_ses_503_then_retry
run_case "ses down: emulator stopped -> 451, retry after restart succeeds" case_emulator_stopped_then_retry
run_case "fallback: SES failing (503, throttling) -> 250 queued, all delivered once after recovery" case_fallback_outage
run_case "dkim: RSA-2048 signature verified by mailauth" case_dkim_rsa
run_case "dkim: Ed25519 signature verified by mailauth" case_dkim_ed25519
run_case "dkim: key and record from sesrelay dkim keygen, verified by mailauth" case_dkim_keygen
run_case "unsubscribe: one-click POST through the built-in endpoint, then the recipient is suppressed" case_unsubscribe_one_click
run_case "readme: go run ./cmd/sesrelay serve, swaks message lands in ./outbox" case_readme_run

kill -0 "$RELAY_PID" 2>/dev/null || { log "e2e: the relay exited during the run"; FAILED=$((FAILED + 1)); FAILED_NAMES+=("relay exited"); }

log ""
for n in "${FAILED_NAMES[@]}"; do log "failed: $n"; done
if [ "$SKIPPED" -gt 0 ]; then
	log "e2e: $PASSED passed, $FAILED failed, $SKIPPED skipped"
else
	log "e2e: $PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
