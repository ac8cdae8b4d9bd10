{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "sesrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. The admin Service appends "-admin", so
the base stays within 57 characters.
*/}}
{{- define "sesrelay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sesrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sesrelay.labels" -}}
helm.sh/chart: {{ include "sesrelay.chart" . }}
{{ include "sesrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sesrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sesrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sesrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sesrelay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The number of replicas that share the SES account's sending rate
(SESRELAY_SES_REPLICAS). With autoscaling, the maximum: the replicas together
must not exceed the account rate even when all of them run.
*/}}
{{- define "sesrelay.sesReplicas" -}}
{{- if .Values.ses.replicas }}
{{- .Values.ses.replicas }}
{{- else if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.maxReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
server.shutdown_timeout in whole seconds. Only h/m/s forms are read (a
shutdown shorter than a second makes no sense); the relay's default is 30s.
*/}}
{{- define "sesrelay.shutdownSeconds" -}}
{{- $d := toString (dig "server" "shutdown_timeout" "30s" .Values.config) }}
{{- if not (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d) }}
{{- fail (printf "config.server.shutdown_timeout %q: write it in whole hours, minutes and seconds (e.g. 30s, 1m30s)" $d) }}
{{- end }}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | default "0" | atoi }}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | default "0" | atoi }}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $h 3600) (mul $m 60) $s }}
{{- end }}

{{/*
Render-time checks that keep the chart and the relay configuration in step:
the ports the probes and Services use must be the ones the relay listens on,
and the grace period must cover the drain.
*/}}
{{- define "sesrelay.validate" -}}
{{- $admin := toString (dig "admin" "address" "" .Values.config) }}
{{- if not $admin }}
{{- fail "config.admin.address is required: the probes and metrics use the admin listener" }}
{{- end }}
{{- if not (hasSuffix (printf ":%v" .Values.ports.admin) $admin) }}
{{- fail (printf "config.admin.address %q does not listen on ports.admin (%v)" $admin .Values.ports.admin) }}
{{- end }}
{{- $server := default dict .Values.config.server }}
{{- range $i, $l := default list $server.listeners }}
{{- $addr := toString $l.address }}
{{- if not (or (hasSuffix (printf ":%v" $.Values.ports.smtp) $addr) (hasSuffix (printf ":%v" $.Values.ports.smtps) $addr)) }}
{{- fail (printf "config.server.listeners[%d].address %q is neither ports.smtp (%v) nor ports.smtps (%v)" $i $addr $.Values.ports.smtp $.Values.ports.smtps) }}
{{- end }}
{{- if and $.Values.service.proxyProtocol (not (has (toString $l.proxy_protocol) (list "required" "optional"))) }}
{{- fail (printf "service.proxyProtocol is on: config.server.listeners[%d].proxy_protocol must be required (or optional) with proxy_protocol_trusted, or the relay reads the header as SMTP" $i) }}
{{- end }}
{{- end }}
{{- if include "sesrelay.suppressionEmbedded" . }}
{{- $replicas := ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if gt (int $replicas) 1 }}
{{- fail (printf "config.suppression.store is embedded (config.suppression.dir is set): a file on one pod's volume serves one replica only, and %s is %v; an unsubscribe taken by one replica would not hold on the others. Set replicaCount: 1 with autoscaling off, or use config.suppression.store: dynamodb" (ternary "autoscaling.maxReplicas" "replicaCount" .Values.autoscaling.enabled) $replicas) }}
{{- end }}
{{- if not .Values.suppression.persistence.enabled }}
{{- fail "config.suppression.dir is set: enable suppression.persistence (a PersistentVolumeClaim mounted there), or unsubscribes are lost when the pod goes" }}
{{- end }}
{{- if not (hasPrefix "/" (toString .Values.config.suppression.dir)) }}
{{- fail (printf "config.suppression.dir %q: must be an absolute path (the persistent volume is mounted there)" (toString .Values.config.suppression.dir)) }}
{{- end }}
{{- end }}
{{- $queued := has (toString (dig "delivery" "mode" "direct" .Values.config)) (list "fallback" "queue") }}
{{- range $t := default list .Values.config.tenants }}
{{- if has (toString (default "" $t.delivery_mode)) (list "fallback" "queue") }}{{ $queued = true }}{{ end }}
{{- end }}
{{- if and $queued (not .Values.queue.persistence.enabled) }}
{{- fail "a tenant delivers in fallback or queue mode: set queue.persistence.enabled (a PersistentVolumeClaim for config.queue.dir); a queue on the pod's filesystem or an emptyDir loses mail when the pod goes" }}
{{- end }}
{{- if .Values.queue.persistence.enabled }}
{{- if not (hasPrefix "/" (toString (dig "queue" "dir" "" .Values.config))) }}
{{- fail "queue.persistence.enabled: config.queue.dir must be set to an absolute path (the claim is mounted there)" }}
{{- end }}
{{- if .Values.queue.persistence.existingClaim }}
{{- fail "queue.persistence.existingClaim is no longer supported: the StatefulSet claims one volume per replica (queue-<name>-<ordinal>). Drain the old claim with `sesrelay queue retry --all` (docs/deploy.md), then remove the key" }}
{{- end }}
{{- end }}
{{- $unsub := toString (dig "unsubscribe_server" "address" "" .Values.config) }}
{{- if and $unsub (not (hasSuffix (printf ":%v" .Values.ports.unsubscribe) $unsub)) }}
{{- fail (printf "config.unsubscribe_server.address %q does not listen on ports.unsubscribe (%v)" $unsub .Values.ports.unsubscribe) }}
{{- end }}
{{- if and .Values.unsubscribe.ingress.enabled (not $unsub) }}
{{- fail "unsubscribe.ingress.enabled: set config.unsubscribe_server.address (e.g. \"0.0.0.0:8080\", on ports.unsubscribe), or there is no endpoint to route to" }}
{{- end }}
{{- if and .Values.unsubscribe.ingress.enabled (not .Values.unsubscribe.ingress.hosts) }}
{{- fail "unsubscribe.ingress.enabled: list the host names of the tenants' list_unsubscribe.url in unsubscribe.ingress.hosts" }}
{{- end }}
{{- $drain := add (include "sesrelay.shutdownSeconds" . | atoi) (int .Values.lifecycle.preStopSleepSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed lifecycle.preStopSleepSeconds + config.server.shutdown_timeout (%d s), or the kubelet kills sessions mid-drain" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- end }}

{{/*
Whether the relay keeps its suppression store in a file (non-empty) or in
DynamoDB (empty): config.suppression.store embedded, its default, with a
config.suppression.dir.
*/}}
{{- define "sesrelay.suppressionEmbedded" -}}
{{- $sup := default dict .Values.config.suppression }}
{{- if and (eq (toString (default "embedded" $sup.store)) "embedded") $sup.dir }}true{{ end }}
{{- end }}

{{/*
The workload kind: a StatefulSet when the queue is on a volume (one claim
per replica, from volumeClaimTemplates), a Deployment otherwise. The
autoscaler's scaleTargetRef follows it.
*/}}
{{- define "sesrelay.workloadKind" -}}
{{- ternary "StatefulSet" "Deployment" (and .Values.queue.persistence.enabled true) }}
{{- end }}

{{/*
Whether the built-in unsubscribe endpoint is on (non-empty):
config.unsubscribe_server.address is set.
*/}}
{{- define "sesrelay.unsubscribeEnabled" -}}
{{- if dig "unsubscribe_server" "address" "" .Values.config }}true{{ end }}
{{- end }}
