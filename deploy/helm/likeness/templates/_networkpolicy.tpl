{{/*
The NetworkPolicy of one workload; common-networkpolicy.yaml denies all other ingress and egress.
Ingress:
  http   (gateway) its REST port from gateway.networkPolicy.from (empty: anywhere) and the helm test pod
  grpc   its gRPC API port (mutual TLS) from the gateway's pods, plus networkPolicy.extraFrom; its plaintext
         health port from nobody: the kubelet probes from the pod's own node, which NetworkPolicy always
         admits (networkPolicy.probesFrom adds peers, for a CNI that filters node traffic too)
  worker no API port at all (nobody calls a GPU worker)
  and, for everyone, the metrics port from networkPolicy.metricsFrom (empty: anywhere).
Egress: DNS and NATS for everyone; the gateway its four gRPC backends; every other service S3 and Vault;
the gateway and the gRPC services (which verify end users' tokens) the JWKS URL unless the keys are a file;
everyone the OTLP collector when traces are exported. (The bootstrap Job's policy: likeness.bootstrap.)
Input: dict root, service, role.
*/}}
{{- define "likeness.networkPolicy" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $w := fromYaml (include "likeness.workload" .) -}}
{{- $svc := index $v .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- $ctx := dict "root" $root "component" $w.component -}}
{{- if and $v.networkPolicy.enabled (or (not (hasKey $pod "enabled")) $pod.enabled) }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" $root | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "likeness.selectorLabels" $ctx | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
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
    {{- with $v.networkPolicy.probesFrom }}
    - ports:
        - port: health
          protocol: TCP
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- end }}
    - ports:
        - port: metrics
          protocol: TCP
      {{- with $v.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  egress:
    {{- include "likeness.egressDns" $root | nindent 4 }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.nats "url" $v.nats.url "default" "4222") | nindent 4 }}
    {{- if eq $w.kind "http" }}
    {{- range $backend := splitList " " (include "likeness.grpcServices" .) }}
    {{- $selected := include "likeness.apiComponent" $backend }}
    - ports:
        - port: {{ (index $v $backend).grpcPort }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "likeness.selectorLabels" (dict "root" $root "component" $selected) | nindent 14 }}
    {{- end }}
    {{- else }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.s3 "url" $v.s3.endpoint "default" "443") | nindent 4 }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.vault "url" $v.vault.addr "default" "8200") | nindent 4 }}
    {{- end }}
    {{- if and (ne $w.kind "worker") (not $v.auth.jwksExistingSecret) }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.jwks "url" $v.auth.jwksUrl "default" "443") | nindent 4 }}
    {{- end }}
    {{- with $v.config.otlpEndpoint }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.otlp "url" . "default" "4317") | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* The egress rule to DNS: UDP and TCP port 53 of networkPolicy.egress.dns.to (empty: any resolver). Input: root. */}}
{{- define "likeness.egressDns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.egress.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
An egress rule to one target of networkPolicy.egress: its ports (or the port of its URL) on its peers (or on
any destination when it lists none). Input: dict target ({to, ports}), url, default (port when the URL's
scheme has none).
*/}}
{{- define "likeness.egressRule" -}}
- ports:
    {{- range $port := (default (list (include "likeness.urlPort" (dict "url" .url "default" .default))) .target.ports) }}
    - port: {{ int $port }}
      protocol: TCP
    {{- end }}
  {{- with .target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
