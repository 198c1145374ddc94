{{/*
The Deployment of one workload. Input: dict root, service, role (see _helpers.tpl).
Every container starts the same way, `python -m <service> <role>` (role `serve` unless the workload names
`work`). Three kinds share it:
  http   the gateway (`python -m gateway serve`): REST on LIKENESS_HTTP_PORT, probes GET /healthz (startup)
         and /readyz (readiness) there; /metrics and /healthz on the metrics port like every other process
  grpc   a gRPC API (`python -m <service> serve`): mutual TLS on its API port, native grpc probes on its
         plaintext health port (config.healthPort, LIKENESS_HEALTH_PORT: grpc.health.v1 and nothing else)
  worker a GPU worker (`python -m <service> work`): a GPU, GPU nodes, a memory-backed /tmp, the base model
         read-only, no API port; readiness GET /healthz on the metrics port
(liveness: see likeness.probes)
Renders nothing for a workload whose values say enabled: false.
*/}}
{{- define "likeness.deployment" -}}
{{- $root := .root -}}
{{- $w := fromYaml (include "likeness.workload" .) -}}
{{- $svc := index $root.Values .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- $ctx := dict "root" $root "component" $w.component -}}
{{- if or (not (hasKey $pod "enabled")) $pod.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" $root | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
spec:
  {{- if not (include "likeness.autoscaled" .) }}
  replicas: {{ $pod.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "likeness.selectorLabels" $ctx | nindent 6 }}
  {{- if eq $w.kind "worker" }}
  strategy:
    # A spare GPU for a surge pod is rare: replace workers one at a time instead.
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "likeness.labels" $ctx | nindent 8 }}
      annotations:
        # Roll the pods when the shared configuration changes.
        checksum/config: {{ include (print $root.Template.BasePath "/common-configmap.yaml") $root | sha256sum }}
        {{- with $pod.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "likeness.serviceAccountName" . }}
      # Nothing here talks to the Kubernetes API. Services using Vault get a Vault-audience token projected
      # explicitly below; the gateway gets none.
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "likeness.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ $pod.terminationGracePeriodSeconds }}
      {{- with $pod.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $pod.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $pod.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $pod.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $pod.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .service }}
          image: {{ include "likeness.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python", "-m", {{ .service | quote }}]
          args: [{{ default "serve" .role | quote }}]
          ports:
            {{- if eq $w.kind "http" }}
            - name: http
              containerPort: {{ $svc.httpPort }}
              protocol: TCP
            {{- else if eq $w.kind "grpc" }}
            - name: grpc
              containerPort: {{ $svc.grpcPort }}
              protocol: TCP
            # Plaintext health for the kubelet's probes (they present no client certificate): no Service
            # publishes it, no NetworkPolicy admits it.
            - name: health
              containerPort: {{ $root.Values.config.healthPort }}
              protocol: TCP
            {{- end }}
            # /metrics and /healthz, off the API port.
            - name: metrics
              containerPort: {{ $root.Values.config.metricsPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "likeness.componentName" (dict "root" $root "component" "config") }}
          env:
            {{- include "likeness.processEnv" . | trim | nindent 12 }}
            {{- if eq $w.kind "http" }}
            - name: LIKENESS_HTTP_PORT
              value: {{ $svc.httpPort | quote }}
            {{- range $name := splitList " " (include "likeness.grpcServices" .) }}
            - name: LIKENESS_{{ upper $name }}_ADDR
              value: {{ include "likeness.grpcAddress" (dict "root" $root "service" $name) | quote }}
            {{- end }}
            # Token buckets per caller under a tenant's total, kept by each replica and charged with what
            # the others report over NATS (gateway.ratelimit_sync); without the sync, N times these.
            - name: LIKENESS_RATE_LIMIT_SYNC
              value: {{ $svc.rateLimit.sync | quote }}
            - name: LIKENESS_RATE_LIMIT_SYNC_SECONDS
              value: {{ $svc.rateLimit.syncSeconds | quote }}
            - name: LIKENESS_RATE_LIMIT_PER_SECOND
              value: {{ $svc.rateLimit.perSecond | quote }}
            - name: LIKENESS_RATE_LIMIT_BURST
              value: {{ int64 $svc.rateLimit.burst | quote }}
            - name: LIKENESS_TENANT_RATE_LIMIT_PER_SECOND
              value: {{ $svc.rateLimit.tenantPerSecond | quote }}
            - name: LIKENESS_TENANT_RATE_LIMIT_BURST
              value: {{ int64 $svc.rateLimit.tenantBurst | quote }}
            - name: LIKENESS_UPLOAD_RATE_LIMIT_PER_SECOND
              value: {{ $svc.rateLimit.uploadPerSecond | quote }}
            - name: LIKENESS_UPLOAD_RATE_LIMIT_BURST
              value: {{ int64 $svc.rateLimit.uploadBurst | quote }}
            - name: LIKENESS_TENANT_UPLOAD_RATE_LIMIT_PER_SECOND
              value: {{ $svc.rateLimit.tenantUploadPerSecond | quote }}
            - name: LIKENESS_TENANT_UPLOAD_RATE_LIMIT_BURST
              value: {{ int64 $svc.rateLimit.tenantUploadBurst | quote }}
            - name: LIKENESS_RATE_LIMIT_TENANTS
              value: {{ int64 $svc.rateLimit.tenants | quote }}
            - name: LIKENESS_RATE_LIMIT_CALLERS
              value: {{ int64 $svc.rateLimit.callers | quote }}
            # Limits before work (gateway.edge, gateway.http_protocol), per replica.
            - name: LIKENESS_MAX_JSON_BODY_BYTES
              value: {{ int64 $svc.edge.maxJsonBodyBytes | quote }}
            - name: LIKENESS_MAX_CONCURRENT_REQUESTS
              value: {{ int64 $svc.edge.maxConcurrentRequests | quote }}
            - name: LIKENESS_MAX_EVENT_STREAMS_PER_CALLER
              value: {{ int64 $svc.edge.maxEventStreamsPerCaller | quote }}
            - name: LIKENESS_MAX_EXPORTS_PER_CALLER
              value: {{ int64 $svc.edge.maxExportsPerCaller | quote }}
            - name: LIKENESS_HEADER_TIMEOUT_SECONDS
              value: {{ $svc.edge.headerTimeoutSeconds | quote }}
            - name: LIKENESS_KEEP_ALIVE_TIMEOUT_SECONDS
              value: {{ int64 $svc.edge.keepAliveTimeoutSeconds | quote }}
            - name: LIKENESS_STREAM_TIMEOUT_SECONDS
              value: {{ $svc.edge.streamTimeoutSeconds | quote }}
            - name: LIKENESS_REQUEST_TIMEOUT_SECONDS
              value: {{ $svc.requestTimeoutSeconds | quote }}
            - name: LIKENESS_SUBJECT_STATUS_CACHE_SECONDS
              value: {{ $svc.subjectStatusCacheSeconds | quote }}
            - name: LIKENESS_IDEMPOTENCY_TTL_SECONDS
              value: {{ int64 $svc.idempotency.ttlSeconds | quote }}
            {{- else if eq $w.kind "grpc" }}
            - name: LIKENESS_GRPC_PORT
              value: {{ $svc.grpcPort | quote }}
            - name: LIKENESS_HEALTH_PORT
              value: {{ $root.Values.config.healthPort | quote }}
            {{- end }}
            {{- if eq .service "ingest" }}
            # An upload's receive ends at this deadline whatever its caller sends (its slot is freed).
            - name: LIKENESS_UPLOAD_RECEIVE_SECONDS
              value: {{ $svc.uploadReceiveSeconds | quote }}
            {{- end }}
            {{- if has .service (splitList " " (include "likeness.jobServices" .)) }}
            # One settings class per service: both roles carry it, only workers mount the weights.
            - name: LIKENESS_BASE_MODEL
              value: {{ $root.Values.baseModel.mountPath | quote }}
            {{- with $root.Values.baseModel.manifestSha256 }}
            # The manifest's own digest: the workers trust only that manifest (and it, every weight file).
            - name: LIKENESS_BASE_MODEL_MANIFEST_SHA256
              value: {{ . | quote }}
            {{- end }}
            {{- if eq $w.kind "grpc" }}
            # Tenant quotas, checked where a job is accepted (the serve role; workers never refuse work).
            {{- $quotas := $root.Values.quotas }}
            - name: LIKENESS_QUOTA_CONCURRENT_TRAININGS
              value: {{ int64 $quotas.concurrentTrainings | quote }}
            - name: LIKENESS_QUOTA_CONCURRENT_RENDERS
              value: {{ int64 $quotas.concurrentRenders | quote }}
            - name: LIKENESS_QUOTA_GPU_SECONDS_PER_DAY
              value: {{ $quotas.gpuSecondsPerDay | quote }}
            - name: LIKENESS_QUOTA_TRAINING_STEPS
              value: {{ int64 $quotas.trainingSteps | quote }}
            - name: LIKENESS_QUOTAS
              value: {{ toJson $quotas.perTenant | quote }}
            # The CUDA base image says NVIDIA_VISIBLE_DEVICES=all; on a node whose default runtime is
            # nvidia that would expose every GPU to the serve role, which requests none.
            - name: NVIDIA_VISIBLE_DEVICES
              value: "void"
            {{- end }}
            {{- end }}
            {{- with $pod.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- $resources := deepCopy (default dict $pod.resources) }}
            {{- if eq $w.kind "worker" }}
            {{- $gpu := dict $pod.gpu.resourceName (int $pod.gpu.count) }}
            {{- $_ := set $resources "requests" (merge (deepCopy $gpu) (default dict $resources.requests)) }}
            {{- $_ := set $resources "limits" (merge (deepCopy $gpu) (default dict $resources.limits)) }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "likeness.containerSecurityContext" . | nindent 12 }}
          {{- include "likeness.probes" (dict "kind" $w.kind "pod" $pod "healthPort" $root.Values.config.healthPort) | nindent 10 }}
          {{- with include "likeness.processVolumes" (dict "root" $root "service" .service "role" .role "part" "mounts") | trim }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
      {{- with include "likeness.processVolumes" (dict "root" $root "service" .service "role" .role "part" "volumes") | trim }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
{{- end }}
{{- end -}}

{{/*
Whether a workload's replica count belongs to an autoscaler (then the Deployment leaves `replicas` out, so an
upgrade does not reset what the autoscaler chose): the HorizontalPodAutoscaler of the gateway and ingest, or
KEDA for the GPU workers. Input: dict root, service, role. Renders "true" or "".
*/}}
{{- define "likeness.autoscaled" -}}
{{- $svc := index .root.Values .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- if eq (default "" .role) "work" -}}
{{- if .root.Values.keda.enabled }}true{{ end -}}
{{- else if and (hasKey $pod "autoscaling") $pod.autoscaling.enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
Startup, liveness and readiness probes of a container. Input: dict kind, pod (its values), healthPort.
Readiness (and startup) follow the service's own health: the gRPC health service (on the plaintext health
port: the API port is mutual TLS, and the kubelet has no client certificate), or /healthz and /readyz,
which turn NOT_SERVING / 503 while NATS, S3 or Vault is unreachable. Liveness must not: restarting every
pod during a dependency outage fixes nothing (and would drop the GPU workers' resident pipelines), so
liveness of every process (the gateway included) asks /metrics on the metrics port, which answers whenever
the process's event loop does. A grpc probe takes a port number, never a port name.
*/}}
{{- define "likeness.probes" -}}
{{- if eq .kind "http" -}}
# Startup waits for the API port itself; the metrics listener opens just before it.
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /metrics
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- else if eq .kind "grpc" -}}
startupProbe:
  grpc:
    port: {{ .healthPort }}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /metrics
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  grpc:
    port: {{ .healthPort }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- else -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  failureThreshold: {{ div (add .pod.startupTimeoutSeconds 9) 10 }}
livenessProbe:
  httpGet:
    path: /metrics
    port: metrics
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
{{- end -}}
