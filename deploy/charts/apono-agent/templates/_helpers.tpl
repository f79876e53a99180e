{{/* The release's full name, at most 63 characters. */}}
{{- define "apono-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apono-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apono-agent.labels" -}}
{{ include "apono-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
apono.io/connector-id: {{ .Values.apono.connectorId | quote }}
{{- end -}}

{{- define "apono-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "apono-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the container finds what the chart mounts (read-only, from the pod's volumes). */}}
{{- define "apono-agent.credentialDir" -}}/etc/apono/credential{{- end -}}
{{- define "apono-agent.caDir" -}}/etc/apono/ca{{- end -}}

{{/* Whether the pod needs its service account token: only the kubernetes store uses it. */}}
{{- define "apono-agent.kubernetesStore" -}}
{{- if has "kubernetes" .Values.secretStores -}}true{{- end -}}
{{- end -}}

{{/* allowedSecretsToRead as namespace/name entries. */}}
{{- define "apono-agent.allowedSecrets" -}}
{{- $ns := .Release.Namespace -}}
{{- $out := list -}}
{{- range .Values.allowedSecretsToRead -}}
{{- if contains "/" . -}}{{- $out = append $out . -}}{{- else -}}{{- $out = append $out (printf "%s/%s" $ns .) -}}{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}
