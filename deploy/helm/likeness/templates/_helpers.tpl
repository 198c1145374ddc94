{{/*
Helpers shared by every template: names, labels, images, the shared environment and the restricted
security context. Helpers about one component take a dict:
  root:    the top-level context ($)
  service: gateway | ingest | retention | trainer | renderer
  role:    serve | work for trainer and renderer, empty otherwise
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "likeness.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: fullnameOverride, or "<release>-<chart>" unless the release name holds the chart name. */}}
{{- define "likeness.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "likeness.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A workload's identity, rendered as YAML for fromYaml:
  component: the suffix of its resource names and its app.kubernetes.io/component label (trainer-work)
  kind:      http (the gateway), grpc (a gRPC API) or worker (a GPU worker)
*/}}
{{- define "likeness.workload" -}}
component: {{ if .role }}{{ printf "%s-%s" .service .role }}{{ else }}{{ .service }}{{ end }}
kind: {{ if eq .service "gateway" }}http{{ else if eq .role "work" }}worker{{ else }}grpc{{ end }}
{{- end -}}

{{/* Name of a component's resources: "<fullname>-<component>". Input: dict root, component. */}}
{{- define "likeness.componentName" -}}
{{- printf "%s-%s" (include "likeness.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a component's pods (or all of the release's pods when component is empty). Input: dict root, component. */}}
{{- define "likeness.selectorLabels" -}}
app.kubernetes.io/name: {{ include "likeness.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels of every resource and pod. Input: dict root, component (may be empty). */}}
{{- define "likeness.labels" -}}
helm.sh/chart: {{ include "likeness.chart" .root }}
{{ include "likeness.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: likeness
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount of a service (both roles of trainer and renderer share one). Input: dict root, service. */}}
{{- define "likeness.serviceAccountName" -}}
{{- $sa := (index .root.Values .service).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "likeness.componentName" (dict "root" .root "component" .service)) $sa.name -}}
{{- else -}}
{{- required (printf "%s.serviceAccount.name is required when serviceAccount.create is false" .service) $sa.name -}}
{{- end -}}
{{- end -}}

{{/* A service's image reference: registry/repository, then @digest or :tag. Input: dict root, service. */}}
{{- define "likeness.image" -}}
{{- $img := (index .root.Values .service).image -}}
{{- $registry := .root.Values.image.registry | trimSuffix "/" -}}
{{- $repository := ternary (printf "%s/%s" $registry $img.repository) $img.repository (ne $registry "") -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default (default .root.Chart.AppVersion .root.Values.image.tag) $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* host:port of a service's gRPC API, as the gateway dials it. Input: dict root, service. */}}
{{- define "likeness.grpcAddress" -}}
{{- printf "%s:%v" (include "likeness.componentName" (dict "root" .root "component" .service)) (index .root.Values .service).grpcPort -}}
{{- end -}}

{{/*
Environment every process gets besides the shared ConfigMap: its Vault role and the secrets, by reference
only (secretKeyRef), never by value. Input: dict root, service.
*/}}
{{- define "likeness.sharedEnv" -}}
{{- $v := .root.Values -}}
- name: LIKENESS_VAULT_ROLE
  value: {{ default (printf "likeness-%s" .service) (index $v .service).vaultRole | quote }}
- name: LIKENESS_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.existingSecret | quote }}
      key: {{ $v.s3.existingSecretAccessKeyKey | quote }}
- name: LIKENESS_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.existingSecret | quote }}
      key: {{ $v.s3.existingSecretSecretKeyKey | quote }}
- name: LIKENESS_HMAC_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.hmac.existingSecret | quote }}
      key: {{ $v.hmac.existingSecretKey | quote }}
{{- end -}}

{{/* Pod-level security context: the "restricted" Pod Security Standard, uid/gid 10001 as in the images. */}}
{{- define "likeness.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "likeness.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The only credential a pod gets: a short-lived service account token for Vault's Kubernetes auth, projected
at the path Kubernetes clients read by default. automountServiceAccountToken stays false everywhere, so no
pod holds a token for the Kubernetes API (audience), nor its CA bundle or namespace file.
*/}}
{{- define "likeness.vaultTokenVolume" -}}
- name: vault-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ .Values.vault.tokenExpirationSeconds }}
          {{- with .Values.vault.tokenAudience }}
          audience: {{ . | quote }}
          {{- end }}
{{- end -}}

{{- define "likeness.vaultTokenMount" -}}
- name: vault-token
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}

{{/*
Refuse values that production would refuse anyway, at render time rather than in a crash loop: every hop is
TLS in a cluster (ARCHITECTURE.md, principle 7).
*/}}
{{- define "likeness.validate" -}}
{{- $v := .Values -}}
{{- if eq $v.config.env "production" -}}
{{- if not (hasPrefix "tls://" $v.nats.url) -}}
{{- fail (printf "nats.url must use tls:// when config.env is production (got %q)" $v.nats.url) -}}
{{- end -}}
{{- range $key, $url := dict "s3.endpoint" $v.s3.endpoint "vault.addr" $v.vault.addr "gateway.auth.jwksUrl" $v.gateway.auth.jwksUrl -}}
{{- if not (hasPrefix "https://" $url) -}}
{{- fail (printf "%s must use https:// when config.env is production (got %q)" $key $url) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
