#!/bin/bash
# SES over HTTPS with AWS_CA_BUNDLE only (no SSL_CERT_FILE), then without any CA (control).
set -u
D=/tmp/bench-head/cabundle
/tmp/bench sesstub --listen 127.0.0.1:0 --tls --cert-out $D/ses-ca.pem > $D/sesstub.log 2>&1 &
STUB=$!
for i in $(seq 50); do grep -q '^listening on ' $D/sesstub.log && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' $D/sesstub.log)
echo "stand-in $URL"
run() { # name, extra env
  name=$1; shift
  sed -e "s#endpoint: \"[^\"]*\"#endpoint: \"$URL\"#" -e 's#127.0.0.1:32869#127.0.0.1:42525#' -e 's#127.0.0.1:33199#127.0.0.1:42526#' /tmp/bench-head/files/s1-r1-v1-relay.yaml > $D/relay.yaml
  mkdir -p $D/home
  env -i PATH=$PATH HOME=$D/home AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=$D/home/aws-config AWS_SHARED_CREDENTIALS_FILE=$D/home/aws-credentials "$@" \
    /tmp/sesrelay-head serve --config $D/relay.yaml > $D/relay-$name.log 2>&1 &
  RELAY=$!
  for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/42525) 2>/dev/null && break; sleep 0.1; done
  echo "== $name: env $*"
  if [ "$name" = ca-bundle ]; then
    timeout 60 /tmp/bench load --addr 127.0.0.1:42525 --mode persistent --conns 16 --size 8KiB --warmup 2s --duration 10s --json > $D/load-$name.json 2>&1
  else
    timeout 60 /tmp/bench load --addr 127.0.0.1:42525 --mode persistent --conns 1 --size 8KiB --count 5 --json > $D/load-$name.json 2>&1
  fi
  echo "load rc $?"
  kill $RELAY; wait $RELAY 2>/dev/null
}
run ca-bundle AWS_CA_BUNDLE=$D/ses-ca.pem
run no-ca
kill $STUB; wait $STUB 2>/dev/null
