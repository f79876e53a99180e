{{- define "apono-vault.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apono-vault.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apono-vault.labels" -}}
{{ include "apono-vault.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "apono-vault.address" -}}
http://{{ include "apono-vault.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.vault.server.service.port }}
{{- end -}}

{{/* vault-init's arguments shared by the Job and the watcher. */}}
{{- define "apono-vault.initArgs" -}}
- --key-custody
- {{ .Values.init.keyCustody | quote }}
- --keys-secret
- {{ .Values.init.keysSecret | quote }}
- --role-secret
- {{ .Values.init.roleSecret | quote }}
- --mount
- {{ .Values.init.mount | quote }}
{{- end -}}

{{- define "apono-vault.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}
