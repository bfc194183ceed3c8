{{/*
Names. The full name is cut to 52 characters: a StatefulSet's pods carry a
controller-revision-hash label "<name>-<10 characters>", which must fit in 63.
*/}}
{{- define "fastly-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "fastly-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fastly-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fastly-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastly-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fastly-exporter.labels" -}}
helm.sh/chart: {{ include "fastly-exporter.chart" . }}
{{ include "fastly-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "fastly-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fastly-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The token given in values: ours (token) or the prometheus-community chart's (fastly.token). */}}
{{- define "fastly-exporter.token" -}}
{{- .Values.token | default (dig "fastly" "token" "" .Values.AsMap) }}
{{- end }}

{{/* Secret holding the token: the existing one, or ours when a token is given; "" if none. */}}
{{- define "fastly-exporter.secretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else if (include "fastly-exporter.token" .) }}
{{- include "fastly-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* Shard count, validated. */}}
{{- define "fastly-exporter.shards" -}}
{{- $n := int .Values.shards }}
{{- if or (lt $n 1) (ne (toString $n) (toString .Values.shards)) }}
{{- fail (printf "shards must be a whole number >= 1, not %v" .Values.shards) }}
{{- end }}
{{- $n }}
{{- end }}

{{/*
The ordinal source: the env var (a list item) a pod reads its ordinal from, via the downward API.
*/}}
{{- define "fastly-exporter.ordinalEnv" -}}
{{- if eq .Values.shardOrdinalFrom "podName" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- else if eq .Values.shardOrdinalFrom "podIndexLabel" -}}
- name: POD_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- else }}
{{- fail (printf "shardOrdinalFrom must be podName or podIndexLabel, not %q" .Values.shardOrdinalFrom) }}
{{- end }}
{{- end }}

{{/*
Container args: -listen, the web config, -state-file (persistence), the shard, then `options` (a list repeats the flag, true is a bare
flag, false is -name=false, null is skipped). Flags the chart owns are refused in options.
*/}}
{{/*
A probe from values, switched to HTTPS when the web config turns TLS on, and (readiness) to
/healthz when it turns basic auth on. Called with (list $ "readinessProbe").
*/}}
{{- define "fastly-exporter.probe" -}}
{{- $root := index . 0 }}
{{- $probe := deepCopy (index $root.Values (index . 1)) }}
{{- with $probe.httpGet }}
{{- if $root.Values.webConfig.tls }}
{{- $_ := set . "scheme" "HTTPS" }}
{{- end }}
{{- if and $root.Values.webConfig.basicAuth (eq (index $ 1) "readinessProbe") }}
{{- $_ := set . "path" "/healthz" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{- define "fastly-exporter.args" -}}
{{- $shards := int (include "fastly-exporter.shards" .) }}
{{- range $owned := list "listen" "endpoint" }}
{{- if hasKey $.Values.options $owned }}
{{- fail (printf "options.%s: the chart sets -listen from service.port" $owned) }}
{{- end }}
{{- end }}
{{- if gt $shards 1 }}
{{- range $owned := list "service-shard" "service-shard-ordinal" }}
{{- if hasKey $.Values.options $owned }}
{{- fail (printf "options.%s: with shards > 1 the chart sets the shard of each pod" $owned) }}
{{- end }}
{{- end }}
{{- end }}
- {{ printf "-listen=:%v" .Values.service.port | quote }}
{{- if .Values.webConfig.existingSecret }}
{{- if hasKey .Values.options "web-config-file" }}
{{- fail "options.web-config-file: use webConfig.existingSecret" }}
{{- end }}
- {{ printf "-web-config-file=/etc/fastly-exporter/web/%s" .Values.webConfig.key | quote }}
{{- end }}
{{- if .Values.persistence.enabled }}
{{- if hasKey .Values.options "state-file" }}
{{- fail "options.state-file: persistence.enabled sets -state-file on the pod's volume" }}
{{- end }}
- {{ printf "-state-file=%s/state" (trimSuffix "/" .Values.persistence.mountPath) | quote }}
{{- end }}
{{- if gt $shards 1 }}
{{- $var := ternary "POD_NAME" "POD_INDEX" (eq .Values.shardOrdinalFrom "podName") }}
- {{ printf "-service-shard-ordinal=$(%s)/%d" $var $shards | quote }}
{{- end }}
{{- range $name, $value := .Values.options }}
{{- if kindIs "slice" $value }}
{{- range $v := $value }}
- {{ printf "-%s=%s" $name (include "fastly-exporter.flagValue" $v) | quote }}
{{- end }}
{{- else if kindIs "bool" $value }}
- {{ ternary (printf "-%s" $name) (printf "-%s=false" $name) $value | quote }}
{{- else if not (kindIs "invalid" $value) }}
- {{ printf "-%s=%s" $name (include "fastly-exporter.flagValue" $value) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One flag value as text. YAML numbers arrive as float64, which %v would print as 1.048576e+06:
whole numbers are printed as integers.
*/}}
{{- define "fastly-exporter.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- printf "%v" . }}
{{- end }}
{{- end }}

{{/*
Resources: the explicit `resources`, else derived from `sizing` (formula in values.yaml).
*/}}
{{- define "fastly-exporter.resources" -}}
{{- if .Values.resources }}
{{- toYaml .Values.resources }}
{{- else }}
{{- $s := .Values.sizing }}
{{- $shards := int (include "fastly-exporter.shards" .) }}
{{- $perPod := ceil (divf $s.services $shards) }}
{{- $bytes := mulf $perPod $s.seriesPerService $s.bytesPerSeries (addf 1 $s.scrapeOverhead) }}
{{- $memMi := max (int $s.minMemoryMi) (int (ceil (divf $bytes 1048576))) }}
{{- $cpuM := max (int $s.minCpuMillis) (int (ceil (mulf $perPod $s.cpuMillisPerService))) -}}
requests:
  cpu: {{ $cpuM }}m
  memory: {{ $memMi }}Mi
limits:
  memory: {{ int (ceil (mulf $memMi $s.limitFactor)) }}Mi
{{- end }}
{{- end }}
