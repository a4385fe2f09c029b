{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; leaves room for the "-worker" / "-migrate" suffixes. */}}
{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "relay.labels" -}}
helm.sh/chart: {{ include "relay.chart" . }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: result-relay
{{- end }}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "relay.secretName" -}}
{{- default (include "relay.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* "true" when the relay talks to PostgreSQL (several pods possible), "" on embedded SQLite. */}}
{{- define "relay.externalDatabase" -}}
{{- if hasPrefix "postgresql" .Values.database.url }}true
{{- else if and .Values.existingSecret .Values.database.external }}true
{{- end }}
{{- end }}

{{/* Number of pods that run the relay at once (at most); > 1 needs PostgreSQL. */}}
{{- define "relay.multiPod" -}}
{{- if eq .Values.mode "split" }}true
{{- else if .Values.api.autoscaling.enabled }}true
{{- else if gt (int .Values.api.replicas) 1 }}true
{{- end }}
{{- end }}

{{/*
Template-time checks. Included by every template that depends on them, so a bad combination
fails `helm template` / `helm install` before anything reaches the cluster.
*/}}
{{- define "relay.validate" -}}
{{- if and (include "relay.multiPod" .) (not (include "relay.externalDatabase" .)) }}
{{- fail (printf "result-relay: SQLite cannot be shared between pods: mode=%s, api.replicas=%v, api.autoscaling.enabled=%v need PostgreSQL. Set database.url=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (or existingSecret with RELAY_DATABASE_URL and database.external=true), or keep mode=combined with api.replicas=1 and autoscaling off." .Values.mode (int .Values.api.replicas) .Values.api.autoscaling.enabled) }}
{{- end }}
{{- if and .Values.existingSecret .Values.database.url }}
{{- fail "result-relay: database.url is ignored with existingSecret: put RELAY_DATABASE_URL into the existing Secret and set database.external=true" }}
{{- end }}
{{- if and .Values.database.external (not .Values.existingSecret) }}
{{- fail "result-relay: database.external=true means RELAY_DATABASE_URL comes from existingSecret, which is not set; use database.url instead" }}
{{- end }}
{{- if and (hasPrefix "sqlite" .Values.database.url) (ne .Values.database.url "sqlite:////data/relay.db") }}
{{- fail "result-relay: a SQLite database.url must be sqlite:////data/relay.db (the volume the chart mounts); leave database.url empty for that" }}
{{- end }}
{{- $drain := add (ceil .Values.shutdownGrace | int) (ceil .Values.discordTimeout | int) 5 (int .Values.preStopSleepSeconds) }}
{{- if le (int (include "relay.terminationGracePeriodSeconds" .)) $drain }}
{{- fail (printf "result-relay: terminationGracePeriodSeconds (%v) must exceed shutdownGrace + discordTimeout + 5 + preStopSleepSeconds (%v): a send on the wire when the grace ends is awaited, and SIGKILL mid-send repeats the message" (include "relay.terminationGracePeriodSeconds" .) $drain) }}
{{- end }}
{{- end }}

{{- define "relay.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (ceil .Values.shutdownGrace | int) (ceil .Values.discordTimeout | int) 5 (int .Values.preStopSleepSeconds) 10 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* A setting value as an environment string: whole numbers without exponent, lists comma-joined. */}}
{{- define "relay.envValue" -}}
{{- $v := . -}}
{{- if kindIs "slice" $v -}}
{{- $parts := list -}}
{{- range $v }}{{ $parts = append $parts (include "relay.envValue" .) }}{{ end -}}
{{- join "," $parts -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (floor $v) (float64 $v) }}{{ printf "%d" (int64 $v) }}{{ else }}{{ $v }}{{ end -}}
{{- else -}}
{{- $v | toString -}}
{{- end -}}
{{- end }}

{{/* The non-secret settings (ConfigMap data). */}}
{{- define "relay.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
RELAY_{{ $key | snakecase | upper }}: {{ include "relay.envValue" $value | quote }}
{{- end }}
{{- end }}
RELAY_SHUTDOWN_GRACE: {{ include "relay.envValue" .Values.shutdownGrace | quote }}
RELAY_DISCORD_TIMEOUT: {{ include "relay.envValue" .Values.discordTimeout | quote }}
{{- if not (include "relay.externalDatabase" .) }}
RELAY_DATABASE_URL: "sqlite:////data/relay.db"
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every relay pod (API, worker). Call with (dict "ctx" $ "role" .Values.api). */}}
{{- define "relay.podAnnotations" -}}
checksum/config: {{ include "relay.configData" .ctx | sha256sum }}
{{- if not .ctx.Values.existingSecret }}
checksum/secret: {{ dict "db" .ctx.Values.database.url "secrets" .ctx.Values.secrets | toJson | sha256sum }}
{{- end }}
{{- with .role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Secret data (base64). A generated admin token is looked up so upgrades keep it. (The pods'
checksum/secret annotation hashes the values instead, so it does not change with the token.)
*/}}
{{- define "relay.secretData" -}}
{{- $existing := (lookup "v1" "Secret" .Release.Namespace (include "relay.fullname" .)) | default dict }}
{{- $old := $existing.data | default dict }}
{{- with .Values.database.url }}
RELAY_DATABASE_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.discordBotToken }}
RELAY_DISCORD_BOT_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.apiKeys }}
RELAY_API_KEYS: {{ join "," . | b64enc | quote }}
{{- end }}
{{- if .Values.secrets.adminToken }}
RELAY_ADMIN_TOKEN: {{ .Values.secrets.adminToken | b64enc | quote }}
{{- else if hasKey $old "RELAY_ADMIN_TOKEN" }}
RELAY_ADMIN_TOKEN: {{ index $old "RELAY_ADMIN_TOKEN" | quote }}
{{- else }}
RELAY_ADMIN_TOKEN: {{ randAlphaNum 32 | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.secretKey }}
RELAY_SECRET_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.metricsToken }}
RELAY_METRICS_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.alertWebhook }}
RELAY_ALERT_WEBHOOK: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/* The relay container's environment wiring. Call with (dict "ctx" $ "runWorkers" true|false). */}}
{{- define "relay.envSources" -}}
envFrom:
  - configMapRef:
      name: {{ include "relay.fullname" .ctx }}
  - secretRef:
      name: {{ include "relay.secretName" .ctx }}
  {{- with .ctx.Values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
env:
  - name: RELAY_RUN_WORKERS
    value: {{ .runWorkers | quote }}
  - name: XDG_CACHE_HOME
    value: /tmp/.cache
  {{- with .ctx.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Volumes of every relay pod: /tmp always, /data for SQLite (PVC or emptyDir) or scratch. */}}
{{- define "relay.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
{{- if and (not (include "relay.externalDatabase" .)) .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "relay.fullname" .)) .Values.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{- define "relay.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- end }}

{{/* "true" when /metrics wants a bearer token (RELAY_METRICS_TOKEN in the chart's or the existing Secret). */}}
{{- define "relay.metricsTokenSet" -}}
{{- if .Values.existingSecret }}{{ if .Values.serviceMonitor.existingSecretHasMetricsToken }}true{{ end }}
{{- else if .Values.secrets.metricsToken }}true
{{- end }}
{{- end }}
