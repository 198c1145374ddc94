{{/*
The Service in front of a service's API: the gateway's REST port, or the gRPC port of ingest, retention and
the serve role of trainer and renderer, plus the metrics port for scraping (the ServiceMonitor's `metrics`
endpoint). GPU workers have none. A gateway Service published outside the cluster (NodePort, LoadBalancer)
keeps only the API port: its metrics port goes on a separate ClusterIP Service, "<fullname>-gateway-metrics",
so /metrics is never exposed with the API.
Input: dict root, service.
*/}}
{{- define "likeness.service" -}}
{{- $root := .root -}}
{{- $svc := index $root.Values .service -}}
{{- $isGateway := eq .service "gateway" -}}
{{- $selected := include "likeness.apiComponent" .service -}}
{{- $external := and $isGateway (ne $svc.service.type "ClusterIP") -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "likeness.componentName" (dict "root" $root "component" .service) }}
  {{- include "likeness.namespace" $root | nindent 2 }}
  labels:
    {{- include "likeness.labels" (dict "root" $root "component" .service) | nindent 4 }}
  {{- if $isGateway }}
  {{- with $svc.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  type: {{ if $isGateway }}{{ $svc.service.type }}{{ else }}ClusterIP{{ end }}
  selector:
    {{- include "likeness.selectorLabels" (dict "root" $root "component" $selected) | nindent 4 }}
  ports:
    {{- if $isGateway }}
    - name: http
      port: {{ $svc.service.port }}
      targetPort: http
      protocol: TCP
    {{- else }}
    - name: grpc
      port: {{ $svc.grpcPort }}
      targetPort: grpc
      protocol: TCP
    {{- end }}
    {{- if not $external }}
    - name: metrics
      port: {{ $root.Values.config.metricsPort }}
      targetPort: metrics
      protocol: TCP
    {{- else }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "likeness.componentName" (dict "root" $root "component" "gateway-metrics") }}
  {{- include "likeness.namespace" $root | nindent 2 }}
  labels:
    {{- include "likeness.labels" (dict "root" $root "component" "gateway") | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "likeness.selectorLabels" (dict "root" $root "component" $selected) | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $root.Values.config.metricsPort }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end -}}
