#!/bin/bash
set -u
D=/tmp/bench-head/s5diag
/tmp/bench sesstub --listen 127.0.0.1:0 > $D/sesstub.log 2>&1 &
STUB=$!
for i in $(seq 50); do grep -q '^listening on ' $D/sesstub.log && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' $D/sesstub.log)
sed -e "s#endpoint: \"[^\"]*\"#endpoint: \"$URL\"#" -e 's#listeners: \[{address: "[^"]*"#listeners: [{address: "127.0.0.1:42535"#' -e 's#admin: {address: "[^"]*"#admin: {address: "127.0.0.1:42536"#' /tmp/bench-head/files/s5-r1-v0-relay.yaml > $D/relay.yaml
mkdir -p $D/home
env -i PATH=$PATH HOME=$D/home AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=$D/home/aws-config AWS_SHARED_CREDENTIALS_FILE=$D/home/aws-credentials \
  /tmp/sesrelay-head serve --config $D/relay.yaml > $D/relay.log 2>&1 &
RELAY=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/42535) 2>/dev/null && break; sleep 0.1; done
timeout 60 /tmp/bench load --addr 127.0.0.1:42535 --idle 1000 --hold 8s --json > $D/load.json 2>&1 &
LOAD=$!
sleep 5
grep -E 'VmRSS|VmHWM' /proc/$RELAY/status
curl -s http://127.0.0.1:42536/metrics > $D/metrics.txt
curl -s -o $D/heap.pprof http://127.0.0.1:42536/debug/pprof/heap
curl -s 'http://127.0.0.1:42536/debug/pprof/heap?debug=1' | grep -E '^# (HeapAlloc|HeapSys|HeapIdle|HeapInuse|HeapReleased|Sys|NextGC|NumGC|Stack)' 
wait $LOAD
kill $RELAY; wait $RELAY 2>/dev/null
kill $STUB; wait $STUB 2>/dev/null
