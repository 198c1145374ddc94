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
The one list of the chart's services, one image each (space-separated: read it with splitList), and of those
that run two roles, `serve` (the gRPC API) and `work` (the GPU worker); the others run `serve` only. Every
template that goes over services takes them from here.
*/}}
{{- define "likeness.services" -}}gateway retention ingest trainer renderer{{- end -}}
{{- define "likeness.jobServices" -}}trainer renderer{{- end -}}

{{/* The services the gateway calls over gRPC: every one but itself. */}}
{{- define "likeness.grpcServices" -}}
{{- without (splitList " " (include "likeness.services" .)) "gateway" | join " " -}}
{{- end -}}

{{/* The component serving a service's API: "<service>-serve" for a job service. Input: the service name. */}}
{{- define "likeness.apiComponent" -}}
{{- if has . (splitList " " (include "likeness.jobServices" .)) }}{{ printf "%s-serve" . }}{{ else }}{{ . }}{{ end -}}
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

{{/*
The ServiceAccount of a process, one per identity ("<fullname>-<identity>", as deploy/vault binds each Vault
role): <service>.serviceAccount for a service's API role (and bootstrap.serviceAccount for the Job),
<service>.work.serviceAccount for its GPU workers, which hold other Vault rights than its API. Input: dict
root, service, role.
*/}}
{{- define "likeness.serviceAccountName" -}}
{{- $svc := index .root.Values .service -}}
{{- $worker := eq (default "" .role) "work" -}}
{{- $sa := $svc.serviceAccount -}}
{{- $where := printf "%s.serviceAccount" .service -}}
{{- if $worker -}}
{{- $sa = $svc.work.serviceAccount -}}
{{- $where = printf "%s.work.serviceAccount" .service -}}
{{- end -}}
{{- if $sa.create -}}
{{- default (include "likeness.componentName" (dict "root" .root "component" (include "likeness.identity" .))) $sa.name -}}
{{- else -}}
{{- required (printf "%s.name is required when %s.create is false" $where $where) $sa.name -}}
{{- end -}}
{{- end -}}

{{/*
A service's image reference: registry/repository, then @digest or :tag. With image.requireDigests (the
production values), an image without a digest fails the render, naming every digest still missing.
Input: dict root, service.
*/}}
{{- define "likeness.image" -}}
{{- $values := .root.Values -}}
{{- if $values.image.requireDigests -}}
{{- $missing := list -}}
{{- range $service := splitList " " (include "likeness.services" .) -}}
{{- if not (index $values $service).image.digest -}}
{{- $missing = append $missing (printf "%s.image.digest" $service) -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "image.requireDigests is true, so every image is pulled by digest: set %s (sha256:<64 hex digits>, e.g. from `crane digest <image>:<tag>`; see \"Pinning images by digest\" in the chart's README)" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
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
Whether a service authenticates to Vault (all but the gateway and the bootstrap Job). Input: service name.
Renders "true" or "".
*/}}
{{- define "likeness.usesVault" -}}
{{- if not (has . (list "gateway" "bootstrap")) }}true{{ end -}}
{{- end -}}

{{/*
The port of a URL: the one it names, else its scheme's default (https 443, http 80, tls/nats 4222, otherwise
the given default). Input: dict url, default.
*/}}
{{- define "likeness.urlPort" -}}
{{- $u := urlParse .url -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else -}}
{{- get (dict "https" "443" "http" "80" "tls" "4222" "nats" "4222") $u.scheme | default .default -}}
{{- end -}}
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

{{/* The namespace line of every namespaced resource (checkov and `kubectl apply` both want it explicit). */}}
{{- define "likeness.namespace" -}}
namespace: {{ .Release.Namespace | quote }}
{{- end -}}

{{/*
Refuse values that production would refuse anyway, at render time rather than in a crash loop: every hop is
TLS in a cluster (ARCHITECTURE.md, principle 7), the OTLP collector's too, gRPC hops mutual TLS (certificates:
likeness.tlsSecretName, likeness.certificate), and tokens name this deployment's own audience.
*/}}
{{- define "likeness.validate" -}}
{{- $v := .Values -}}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.enabled is true: the Issuer or ClusterIssuer that signs every process's certificate (see \"Mutual TLS\" in the chart's README)" -}}
{{- end -}}
{{- if eq $v.config.env "production" -}}
{{- if not (hasPrefix "tls://" $v.nats.url) -}}
{{- fail (printf "nats.url must use tls:// when config.env is production (got %q)" $v.nats.url) -}}
{{- end -}}
{{- $urls := dict "s3.endpoint" $v.s3.endpoint "vault.addr" $v.vault.addr -}}
{{- if not $v.auth.jwksExistingSecret -}}
{{- $_ := set $urls "auth.jwksUrl" $v.auth.jwksUrl -}}
{{- end -}}
{{- range $key, $url := $urls -}}
{{- if not (hasPrefix "https://" $url) -}}
{{- fail (printf "%s must use https:// when config.env is production (got %q)" $key $url) -}}
{{- end -}}
{{- end -}}
{{- if not (or $v.auth.jwksUrl $v.auth.jwksExistingSecret) -}}
{{- fail "auth.jwksUrl or auth.jwksExistingSecret is required when config.env is production: every process verifies end users' tokens against the identity provider's keys" -}}
{{- end -}}
{{- if $v.auth.jwtDevSecretExistingSecret -}}
{{- fail "auth.jwtDevSecretExistingSecret is for development only: production verifies tokens against the identity provider's keys (auth.jwksUrl or auth.jwksExistingSecret) and refuses a signing secret" -}}
{{- end -}}
{{- with $v.config.otlpEndpoint -}}
{{- if not (hasPrefix "https://" .) -}}
{{- fail (printf "config.otlpEndpoint must use https:// when config.env is production (got %q): spans are not sent in plaintext" .) -}}
{{- end -}}
{{- end -}}
{{- if has (trim $v.auth.audience) (list "" "likeness") -}}
{{- fail "auth.audience must be this deployment's own API audience when config.env is production, not empty or the development default \"likeness\"" -}}
{{- end -}}
{{- end -}}
{{- end -}}
