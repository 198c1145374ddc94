{{/*
One ServiceAccount per service, bound to that service's Vault role (least privilege: one Vault policy per
account). The account's token is never auto-mounted: pods get a projected, Vault-audience token instead
(see likeness.vaultTokenVolume). Input: dict root, service.
*/}}
{{- define "likeness.serviceAccount" -}}
{{- $sa := (index .root.Values .service).serviceAccount -}}
{{- if $sa.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "likeness.serviceAccountName" . }}
  labels:
    {{- include "likeness.labels" (dict "root" .root "component" .service) | nindent 4 }}
  {{- with $sa.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
