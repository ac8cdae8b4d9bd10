#!/usr/bin/env bash
# Checks the deployment artefacts: lints the Helm chart, renders it with the
# default values and with every optional resource on, and runs the Go tests
# in ./deploy against the rendered manifests (probes, hardening, config
# mount, Services), the Dockerfile (it runs deploy/build.sh, no drift) and
# the compose files.
#
# helm is built once from the Go module proxy into a cache directory
# (SESRELAY_TOOLS, default ~/.cache/sesrelay-tools); later runs reuse it.
set -euo pipefail

cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
# helm built by `go install` does not know the cluster version it targets;
# render for a current Kubernetes (the chart needs >= 1.25).
KUBE_VERSION=1.31.0
TOOLS="${SESRELAY_TOOLS:-${HOME:-/tmp}/.cache/sesrelay-tools}"
HELM="$TOOLS/bin/helm"
STAMP="$TOOLS/bin/helm.version"
CHART=deploy/helm/sesrelay

if [ ! -x "$HELM" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$HELM_VERSION" ]; then
	echo "deploy-check: building helm $HELM_VERSION from the Go module proxy (a few minutes of CPU, once)"
	start=$SECONDS
	mkdir -p "$TOOLS/bin"
	GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	echo "$HELM_VERSION" >"$STAMP"
	echo "deploy-check: helm built in $((SECONDS - start))s"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# Keep helm's own cache and configuration out of the home directory.
export HELM_CACHE_HOME="$out/.helm/cache" HELM_CONFIG_HOME="$out/.helm/config" HELM_DATA_HOME="$out/.helm/data"

"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" -f "$CHART/ci/all-optional-values.yaml"

mkdir -p "$out/rendered"
"$HELM" template sesrelay "$CHART" --namespace mail --kube-version "$KUBE_VERSION" \
	>"$out/rendered/default.yaml"
"$HELM" template sesrelay "$CHART" --namespace mail --kube-version "$KUBE_VERSION" \
	-f "$CHART/ci/all-optional-values.yaml" >"$out/rendered/all-optional.yaml"
"$HELM" lint --strict "$CHART" -f "$CHART/ci/suppression-embedded-values.yaml"
"$HELM" template sesrelay "$CHART" --namespace mail --kube-version "$KUBE_VERSION" \
	-f "$CHART/ci/suppression-embedded-values.yaml" >"$out/rendered/suppression-embedded.yaml"

"$HELM" lint --strict "$CHART" -f "$CHART/ci/queue-values.yaml"
"$HELM" template sesrelay "$CHART" --namespace mail --kube-version "$KUBE_VERSION" \
	-f "$CHART/ci/queue-values.yaml" >"$out/rendered/queue.yaml"

# The queue on a StatefulSet scales: with the autoscaler too (its target
# follows the kind; the Go test checks it).
"$HELM" template sesrelay "$CHART" --namespace mail --kube-version "$KUBE_VERSION" \
	-f "$CHART/ci/queue-values.yaml" --set autoscaling.enabled=true >"$out/rendered/queue-autoscaled.yaml"

# The queue without a volume must refuse to render (an emptyDir loses mail
# on rescheduling), and so must a single claim shared by the replicas.
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" -f "$CHART/ci/queue-values.yaml" \
	--set queue.persistence.enabled=false >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered fallback mode without queue.persistence" >&2
	exit 1
fi
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" -f "$CHART/ci/queue-values.yaml" \
	--set queue.persistence.existingClaim=shared >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered one existing queue claim for every replica" >&2
	exit 1
fi

# A chart that must refuse to render: a grace period shorter than the drain.
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" \
	--set terminationGracePeriodSeconds=10 >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered with terminationGracePeriodSeconds below shutdown_timeout" >&2
	exit 1
fi

# Nor the embedded suppression store with more than one replica.
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" \
	-f "$CHART/ci/suppression-embedded-values.yaml" --set replicaCount=2 >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered the embedded suppression store with two replicas" >&2
	exit 1
fi

# Nor an unsubscribe Ingress without the endpoint, or the endpoint on
# another port than the container's.
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" \
	--set unsubscribe.ingress.enabled=true --set 'unsubscribe.ingress.hosts={unsubscribe.example.com}' >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered an unsubscribe Ingress without config.unsubscribe_server.address" >&2
	exit 1
fi
if "$HELM" template sesrelay "$CHART" --kube-version "$KUBE_VERSION" -f "$CHART/ci/all-optional-values.yaml" \
	--set ports.unsubscribe=9000 >/dev/null 2>&1; then
	echo "deploy-check: the chart rendered config.unsubscribe_server.address on another port than ports.unsubscribe" >&2
	exit 1
fi

SESRELAY_RENDERED_DIR="$out/rendered" go test -count=1 ./deploy/
echo "deploy-check: ok"
