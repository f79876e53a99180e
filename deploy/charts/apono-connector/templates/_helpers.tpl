{{/* The release's full name, at most 63 characters. */}}
{{- define "apono-connector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apono-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apono-connector.labels" -}}
{{ include "apono-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "apono-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "apono-connector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the container finds what the chart mounts (deploy/Dockerfile creates the data dir). */}}
{{- define "apono-connector.configPath" -}}/etc/apono/connector.toml{{- end -}}
{{- define "apono-connector.dataDir" -}}/var/lib/apono-connector{{- end -}}
{{- define "apono-connector.tlsDir" -}}/etc/apono/tls{{- end -}}
{{- define "apono-connector.masterKeyDir" -}}/etc/apono/master-key{{- end -}}

{{/* SQLite (no database Secret): one replica, a PVC, Recreate. */}}
{{- define "apono-connector.sqlite" -}}
{{- if not .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* allowedSecretsToRead as namespace/name entries. */}}
{{- define "apono-connector.allowedSecrets" -}}
{{- $ns := .Release.Namespace -}}
{{- $out := list -}}
{{- range .Values.allowedSecretsToRead -}}
{{- if contains "/" . -}}{{- $out = append $out . -}}{{- else -}}{{- $out = append $out (printf "%s/%s" $ns .) -}}{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- define "apono-connector.scheme" -}}
{{- if .Values.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
