{{/*
One ServiceAccount per process identity, bound to that identity's Vault role (least privilege: one Vault
policy per account): the API role of each service, the GPU workers of trainer and renderer (their own
account: they hold Vault rights their API does not), and the bootstrap Job (no Vault role at all). The
account's token is never auto-mounted: pods of processes using Vault get a projected, Vault-audience token
instead (see likeness.vaultTokenVolume); the gateway's and the bootstrap Job's get none.
Input: dict root, service, role, and hook (the Helm hook annotations of the bootstrap Job's account, which
must exist before its Job runs; empty otherwise). Renders nothing for a process that is not deployed.
*/}}
{{- define "likeness.serviceAccount" -}}
{{- $svc := index .root.Values .service -}}
{{- $worker := eq (default "" .role) "work" -}}
{{- $sa := $svc.serviceAccount -}}
{{- $deployed := true -}}
{{- $component := .service -}}
{{- if $worker -}}
{{- $sa = $svc.work.serviceAccount -}}
{{- $deployed = $svc.work.enabled -}}
{{- $component = printf "%s-work" .service -}}
{{- end -}}
{{- if and $sa.create $deployed }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "likeness.serviceAccountName" . }}
  {{- include "likeness.namespace" .root | nindent 2 }}
  labels:
    {{- include "likeness.labels" (dict "root" .root "component" $component) | nindent 4 }}
  {{- $annotations := merge (dict) (default dict .hook) (default dict $sa.annotations) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
