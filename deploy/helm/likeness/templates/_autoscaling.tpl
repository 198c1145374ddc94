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
The KEDA ScaledObject of a GPU worker: scales on the whole backlog of its JetStream work queue, every tenant's
(jobs waiting, running or due again), down to zero. A work queue has one consumer per tenant (and priority),
so KEDA's nats-jetstream scaler, which reads one consumer, would see one tenant only: the trigger is
Prometheus, on `likeness_queue_backlog_messages{queue}` that the always-up serve role exports (the stream's
message count; likeness.job_metrics). The queue labels are the code's (train, render); a test checks they
agree. max(): every serve replica reports the same count.
Input: dict root, service.
*/}}
{{- define "likeness.scaledObject" -}}
{{- $v := .root.Values -}}
{{- $work := (index $v .service).work -}}
{{- $a := $work.autoscaling -}}
{{- $ctx := dict "root" .root "component" (printf "%s-work" .service) -}}
{{- $queue := get (dict "trainer" "train" "renderer" "render") .service -}}
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
    - type: prometheus
      metadata:
        serverAddress: {{ $v.keda.prometheusServerAddress | quote }}
        query: {{ printf "max(likeness_queue_backlog_messages{queue=%q,namespace=%q})" $queue .root.Release.Namespace | quote }}
        threshold: {{ $a.lagThreshold | quote }}
        activationThreshold: {{ $a.activationLagThreshold | quote }}
{{- end }}
{{- end -}}
