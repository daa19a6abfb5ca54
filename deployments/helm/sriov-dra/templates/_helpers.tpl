{{/*
Labels of every object: the ones the kustomize base has, plus Helm's
release labels (the chart test ignores exactly these four).
*/}}
{{- define "sriov-dra.labels" -}}
app.kubernetes.io/name: sriov-dra
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The driver pods: selector and pod template labels, never changed by an upgrade. */}}
{{- define "sriov-dra.selectorLabels" -}}
app.kubernetes.io/name: sriov-dra
app.kubernetes.io/component: driver
{{- end -}}

{{- define "sriov-dra.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* METRICS_ADDR: host:port, an IPv6 host in brackets, "" host = every address. */}}
{{- define "sriov-dra.metricsAddr" -}}
{{- $h := .Values.metricsHost -}}
{{- if contains ":" $h -}}{{- $h = printf "[%s]" $h -}}{{- end -}}
{{ printf "%s:%d" $h (int .Values.metricsPort) }}
{{- end -}}
