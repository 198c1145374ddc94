{{/*
Provisioning: `likeness bootstrap` (cli/likeness_cli/bootstrap_commands.py) creates or brings up to date what
the services bind to, as libs/likeness/likeness/provisioning.py declares it: the NATS streams, KV buckets and
durable consumers, the S3 bucket with its versioning and the bucket policy that keeps object versions for
retention. The services never create them (their NATS users and S3 identities may not).

It runs as a Job, a Helm hook before every install and upgrade (bootstrap.enabled), as the bootstrap
identity: its own ServiceAccount (no token), its own credentials (credentials.bootstrap: nats_password,
s3_access_key, s3_secret_key, as files) and a NetworkPolicy letting it reach DNS, NATS and S3 only. A
failed Job fails the install or upgrade before any service changes.

Hooks run before the release's own resources exist, so everything the Job needs is a hook too, created
first (a lower weight): its ServiceAccount and its NetworkPolicy (on an upgrade, the release's default-deny
policy is already in force). For the same reason the Job reads no ConfigMap of the release: its settings are
in its own environment. Each hook is deleted once every hook of the phase succeeded, and replaced at the
next run; a failed Job stays, with its pod's log, until then.
*/}}

{{/* The hook annotations of the bootstrap's resources, the Job last (weight 0). Input: dict weight. */}}
{{- define "likeness.bootstrapHook" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/* The bootstrap Job's ServiceAccount, created before the Job. Input: the root context. */}}
{{- define "likeness.bootstrapServiceAccount" -}}
{{- if .Values.bootstrap.enabled }}
{{- $hook := fromYaml (include "likeness.bootstrapHook" (dict "weight" "-10")) }}
{{- include "likeness.serviceAccount" (dict "root" . "service" "bootstrap" "hook" $hook) }}
{{- end }}
{{- end -}}

{{/*
The bootstrap Job's NetworkPolicy, created before the Job: nothing may connect to it; it may reach DNS,
NATS (networkPolicy.egress.nats) and S3 (networkPolicy.egress.s3), and nothing else: not Vault, not the
services, not the identity provider. Input: the root context.
*/}}
{{- define "likeness.bootstrapNetworkPolicy" -}}
{{- $v := .Values -}}
{{- if and $v.bootstrap.enabled $v.networkPolicy.enabled }}
{{- $ctx := dict "root" . "component" "bootstrap" }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" . | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
  annotations:
    {{- include "likeness.bootstrapHook" (dict "weight" "-10") | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "likeness.selectorLabels" $ctx | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  egress:
    {{- include "likeness.egressDns" . | nindent 4 }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.nats "url" $v.nats.url "default" "4222") | nindent 4 }}
    {{- include "likeness.egressRule" (dict "target" $v.networkPolicy.egress.s3 "url" $v.s3.endpoint "default" "443") | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
The bootstrap Job: one pod at a time, `likeness bootstrap` in the retention image (the image that carries the
`likeness` command), restricted like every pod of the chart. Input: the root context.
*/}}
{{- define "likeness.bootstrapJob" -}}
{{- $v := .Values -}}
{{- $b := $v.bootstrap -}}
{{- if $b.enabled }}
{{- $ctx := dict "root" . "component" "bootstrap" }}
{{- $process := dict "root" . "service" "bootstrap" }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "likeness.componentName" $ctx }}
  {{- include "likeness.namespace" . | nindent 2 }}
  labels:
    {{- include "likeness.labels" $ctx | nindent 4 }}
  annotations:
    {{- include "likeness.bootstrapHook" (dict "weight" "0") | nindent 4 }}
spec:
  backoffLimit: {{ $b.backoffLimit }}
  activeDeadlineSeconds: {{ $b.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "likeness.labels" $ctx | nindent 8 }}
      {{- with $b.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "likeness.serviceAccountName" $process }}
      # It talks to NATS and S3 only: no Kubernetes API token, no Vault token.
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "likeness.podSecurityContext" . | nindent 8 }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: bootstrap
          image: {{ include "likeness.image" (dict "root" . "service" "retention") | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: ["likeness", "bootstrap"]
          {{- $args := list }}
          {{- if $b.strict }}{{ $args = append $args "--strict" }}{{ end }}
          {{- if $b.auditMaxBytes }}{{ $args = concat $args (list "--audit-max-bytes" (int64 $b.auditMaxBytes | toString)) }}{{ end }}
          {{- with $args }}
          args: {{ toJson . }}
          {{- end }}
          env:
            # What the shared ConfigMap would say; hooks run before it exists.
            - name: LIKENESS_ENV
              value: {{ $v.config.env | quote }}
            - name: LIKENESS_LOG_LEVEL
              value: {{ $v.config.logLevel | quote }}
            - name: LIKENESS_NATS_URL
              value: {{ $v.nats.url | quote }}
            - name: LIKENESS_S3_ENDPOINT
              value: {{ $v.s3.endpoint | quote }}
            - name: LIKENESS_S3_BUCKET
              value: {{ $v.s3.bucket | quote }}
            - name: LIKENESS_S3_REGION
              value: {{ $v.s3.region | quote }}
            {{- with $b.streamBounds }}
            {{- with .maxBytes }}
            - name: LIKENESS_STREAM_MAX_BYTES
              value: {{ toJson . | quote }}
            {{- end }}
            {{- with .maxAgeSeconds }}
            - name: LIKENESS_STREAM_MAX_AGE_SECONDS
              value: {{ toJson . | quote }}
            {{- end }}
            {{- end }}
            - name: LIKENESS_STREAM_REPLICAS
              value: {{ $b.streamReplicas | default 1 | quote }}
            {{- include "likeness.processEnv" $process | trim | nindent 12 }}
          resources:
            {{- toYaml $b.resources | nindent 12 }}
          securityContext:
            {{- include "likeness.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "likeness.processVolumes" (merge (dict "part" "mounts") $process) | trim | nindent 12 }}
      volumes:
        {{- include "likeness.processVolumes" (merge (dict "part" "volumes") $process) | trim | nindent 8 }}
{{- end }}
{{- end -}}
