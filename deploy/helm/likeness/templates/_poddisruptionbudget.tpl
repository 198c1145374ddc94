{{/*
The PodDisruptionBudget of one workload: how many of its pods a node drain may evict at once.
maxUnavailable (not minAvailable) so a single-replica workload can still be drained.
Input: dict root, service, role.
*/}}
{{- define "likeness.podDisruptionBudget" -}}
{{- $w := fromYaml (include "likeness.workload" .) -}}
{{- $svc := index .root.Values .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- $ctx := dict "root" .root "component" $w.component -}}
{{- if and (or (not (hasKey $pod "enabled")) $pod.enabled) $pod.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" .root | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $pod.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "likeness.selectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- end -}}
