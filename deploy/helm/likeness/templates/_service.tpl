{{/*
The Service in front of a service's API: the gateway's REST port, or the gRPC port of ingest, retention and
the serve role of trainer and renderer, plus the metrics port for scraping (not on a gateway Service of
type NodePort or LoadBalancer). GPU workers have none.
Input: dict root, service.
*/}}
{{- define "likeness.service" -}}
{{- $root := .root -}}
{{- $svc := index $root.Values .service -}}
{{- $isGateway := eq .service "gateway" -}}
{{- $selected := ternary .service (printf "%s-serve" .service) (has .service (list "gateway" "ingest" "retention")) -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "likeness.componentName" (dict "root" $root "component" .service) }}
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
    {{- /* Never publish metrics through a gateway Service that leaves the cluster. */}}
    {{- if or (not $isGateway) (eq $svc.service.type "ClusterIP") }}
    - name: metrics
      port: {{ $root.Values.config.metricsPort }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end -}}
