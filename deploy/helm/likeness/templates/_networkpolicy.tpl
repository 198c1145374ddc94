{{/*
The NetworkPolicy admitting traffic to one workload; common-networkpolicy.yaml denies everything else.
  http   (gateway) its REST port from gateway.networkPolicy.from (empty: anywhere) and the helm test pod
  grpc   its gRPC port from the gateway's pods, plus networkPolicy.extraFrom
  worker no API port at all
and, for every kind, the metrics port from networkPolicy.metricsFrom (empty: anywhere).
Kubelet probes are not subject to NetworkPolicy. Input: dict root, service, role.
*/}}
{{- define "likeness.networkPolicy" -}}
{{- $root := .root -}}
{{- $w := fromYaml (include "likeness.workload" .) -}}
{{- $svc := index $root.Values .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- $ctx := dict "root" $root "component" $w.component -}}
{{- if and $root.Values.networkPolicy.enabled (or (not (hasKey $pod "enabled")) $pod.enabled) }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "likeness.selectorLabels" $ctx | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    {{- if eq $w.kind "http" }}
    - ports:
        - port: http
          protocol: TCP
      {{- with $pod.networkPolicy.from }}
      from:
        {{- toYaml . | nindent 8 }}
        - podSelector:
            matchLabels:
              {{- include "likeness.selectorLabels" (dict "root" $root "component" "gateway-test") | nindent 14 }}
      {{- end }}
    {{- else if eq $w.kind "grpc" }}
    - ports:
        - port: grpc
          protocol: TCP
      from:
        - podSelector:
            matchLabels:
              {{- include "likeness.selectorLabels" (dict "root" $root "component" "gateway") | nindent 14 }}
        {{- with $pod.networkPolicy.extraFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- end }}
    - ports:
        - port: metrics
          protocol: TCP
      {{- with $root.Values.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- end -}}
