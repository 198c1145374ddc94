{{/*
Autoscalers. The Deployments they scale leave `replicas` out (see likeness.autoscaled).
*/}}

{{/*
The HorizontalPodAutoscaler (autoscaling/v2) of the gateway or ingest: CPU and, optionally, memory use
relative to the requests. Input: dict root, service.
*/}}
{{- define "likeness.horizontalPodAutoscaler" -}}
{{- $svc := index .root.Values .service -}}
{{- $a := $svc.autoscaling -}}
{{- $ctx := dict "root" .root "component" .service -}}
{{- if $a.enabled }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "%s.autoscaling.minReplicas must not exceed maxReplicas" .service) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" .root | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "likeness.componentName" $ctx }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $a.targetMemoryUtilizationPercentage }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The KEDA ScaledObject of a GPU worker: scales on the backlog of its JetStream work queue (messages waiting
plus delivered but not yet acked, KEDA's nats-jetstream scaler), down to zero. The stream and durable
consumer names are the code's: likeness.bus TRAIN_STREAM / RENDER_STREAM and the workers' `durable`
(trainer-workers, renderer-workers); a test checks they agree. Until a worker has created its consumer, KEDA
counts the whole stream as backlog, so the first job still wakes a worker from zero.
Input: dict root, service.
*/}}
{{- define "likeness.scaledObject" -}}
{{- $v := .root.Values -}}
{{- $work := (index $v .service).work -}}
{{- $a := $work.autoscaling -}}
{{- $ctx := dict "root" .root "component" (printf "%s-work" .service) -}}
{{- $queue := get (dict "trainer" (list "LIKENESS_JOBS_TRAIN" "trainer-workers") "renderer" (list "LIKENESS_JOBS_RENDER" "renderer-workers")) .service -}}
{{- if and $v.keda.enabled $work.enabled }}
{{- if gt (int $a.minReplicaCount) (int $a.maxReplicaCount) }}
{{- fail (printf "%s.work.autoscaling.minReplicaCount must not exceed maxReplicaCount" .service) }}
{{- end }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" .root | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "likeness.componentName" $ctx }}
  minReplicaCount: {{ $a.minReplicaCount }}
  maxReplicaCount: {{ $a.maxReplicaCount }}
  pollingInterval: {{ $a.pollingInterval }}
  cooldownPeriod: {{ $a.cooldownPeriod }}
  triggers:
    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: {{ $v.keda.natsMonitoringEndpoint | quote }}
        useHttps: {{ $v.keda.useHttps | quote }}
        account: {{ $v.keda.account | quote }}
        stream: {{ index $queue 0 | quote }}
        consumer: {{ index $queue 1 | quote }}
        lagThreshold: {{ $a.lagThreshold | quote }}
        activationLagThreshold: {{ $a.activationLagThreshold | quote }}
{{- end }}
{{- end -}}
