{{/*
One ServiceAccount per service, bound to that service's Vault role (least privilege: one Vault policy per
account). The account's token is never auto-mounted: pods of services using Vault get a projected,
Vault-audience token instead (see likeness.vaultTokenVolume); the gateway's get none. Input: dict root, service.
*/}}
{{- define "likeness.serviceAccount" -}}
{{- $sa := (index .root.Values .service).serviceAccount -}}
{{- if $sa.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "likeness.serviceAccountName" . }}
  {{- include "likeness.namespace" .root | nindent 2 }}
  labels:
    {{- include "likeness.labels" (dict "root" .root "component" .service) | nindent 4 }}
  {{- with $sa.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
