{{/*
What one process holds besides the shared ConfigMap: its identity, its secret files, its own environment and
its volumes. A process is one workload (a service in one role); the Deployment builds its pod from these
helpers only, so what each process may hold is decided here, in one place. Input of each: dict root,
service, role (see _helpers.tpl).

Secrets reach a process as files, never as environment variables (those leak into /proc/<pid>/environ,
crash reports and child processes, and production settings refuse them): one projected volume holds the
keys of Secrets the process uses, each as a file named after its setting (s3_secret_key, hmac_secret...), in
the directory LIKENESS_SECRETS_DIR names.
*/}}

{{/*
The process's identity: the service for its API role, "<service>-worker" for a GPU worker (trainer-worker,
renderer-worker), "bootstrap" for the provisioning Job (service "bootstrap"). It names everything the
process is trusted with: its credentials (credentials.<identity>: its NATS user, its S3 identity), its
ServiceAccount and Vault role (likeness-<identity>) and its certificate (spiffe://likeness/<identity>).
*/}}
{{- define "likeness.identity" -}}
{{- if eq (default "" .role) "work" }}{{ printf "%s-worker" .service }}{{ else }}{{ .service }}{{ end -}}
{{- end -}}

{{/*
Whether a process has a gRPC hop, so a certificate (mutual TLS, LIKENESS_TLS_DIR): the gateway calls the
gRPC services, which serve; the GPU workers and the bootstrap Job neither call nor serve. Input: dict
service, role. Renders "true" or "".
*/}}
{{- define "likeness.grpcHop" -}}
{{- if and (ne (default "" .role) "work") (ne .service "bootstrap") }}true{{ end -}}
{{- end -}}

{{/*
Whether a process verifies end users' tokens (the JWKS settings, and jwt_dev_secret in development): the
gateway and every gRPC service, which each check the caller's token again. GPU workers and the bootstrap Job
serve no call. Input: dict service, role. Renders "true" or "".
*/}}
{{- define "likeness.verifiesTokens" -}}
{{- include "likeness.grpcHop" . -}}
{{- end -}}

{{/* Where a process's certificate is mounted (LIKENESS_TLS_DIR): a directory of its own, beside the secrets'. */}}
{{- define "likeness.tlsDir" -}}/var/run/secrets/likeness-tls{{- end -}}

{{/*
The Secret holding a process's certificate (tls.crt, tls.key, ca.crt): the one its cert-manager Certificate
fills ("<fullname>-<identity>-tls", likeness.certificate), else tls.existingSecrets.<identity>. Input: dict
root, service, role.
*/}}
{{- define "likeness.tlsSecretName" -}}
{{- $identity := include "likeness.identity" . -}}
{{- if .root.Values.tls.certManager.enabled -}}
{{- include "likeness.componentName" (dict "root" .root "component" (printf "%s-tls" $identity)) -}}
{{- else -}}
{{- required (printf "tls.existingSecrets.%s is required (a Secret with tls.crt, tls.key and ca.crt: %s's certificate for mutual TLS), or set tls.certManager.enabled" $identity $identity) (index .root.Values.tls.existingSecrets $identity) -}}
{{- end -}}
{{- end -}}

{{/*
Every process of the release, as YAML for fromYaml: `processes`, a list of {service, role}; GPU workers
whose work.enabled is false are left out. Input: the root context.
*/}}
{{- define "likeness.processes" -}}
processes:
{{- range $service := splitList " " (include "likeness.services" .) }}
{{- if has $service (splitList " " (include "likeness.jobServices" $)) }}
  - {service: {{ $service }}, role: serve}
  {{- if (index $.Values $service).work.enabled }}
  - {service: {{ $service }}, role: work}
  {{- end }}
{{- else }}
  - {service: {{ $service }}, role: ""}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Secrets a process reads, as one line: "<Secret>" (<key>, <key>), ... Input: dict root, service, role.
*/}}
{{- define "likeness.secretsSummary" -}}
{{- $files := (fromYaml (include "likeness.secretFiles" .)).files -}}
{{- $names := list -}}
{{- range $files }}{{ $names = append $names .secret }}{{ end -}}
{{- range $i, $name := uniq $names -}}
{{- if $i }}, {{ end }}{{ $name | quote }} (
{{- $keys := list -}}
{{- range $files }}{{ if eq .secret $name }}{{ $keys = append $keys .key }}{{ end }}{{ end -}}
{{- join ", " $keys }})
{{- end -}}
{{- end -}}

{{/* The directory of a process's secret files (LIKENESS_SECRETS_DIR). */}}
{{- define "likeness.secretsDir" -}}/var/run/secrets/likeness{{- end -}}

{{/*
The secret files of a process, rendered as YAML for fromYaml: `files`, a list of
  {secret: <existing Secret>, key: <its key>, file: <the setting it becomes>}
and nothing a process does not use:
  every process   nats_password of its NATS user (credentials.<identity>.natsUser, when set)
  all but gateway s3_access_key, s3_secret_key of its own S3 identity (credentials.<identity>.existingSecret)
  gateway         idempotency_secret (gateway.idempotency)
  gateway, gRPC   jwt_dev_secret (auth.jwtDevSecretExistingSecret, development only; GPU workers and the
                  bootstrap Job verify no end user's token)
  retention       hmac_secret (hmac: retention alone holds it), receipt_signing_key (retention.receipts)
  ingest, trainer, renderer, retention (both roles of the GPU services)
                  audit_pseudonym_secret (auditPseudonym: the person's pseudonym in the audit trail)
  renderer-worker watermark_key, c2pa_cert_chain, c2pa_private_key (renderer.marking)
  renderer        watermark_key only: RendererSettings requires it of both roles in production, though the
                  serve role marks nothing; it never gets the C2PA signing key (LIKENESS_C2PA_SIGN=false)
  bootstrap       nats_password, s3_access_key, s3_secret_key (credentials.bootstrap), nothing else
Vault needs no secret file: processes log in with their projected service account token. Certificates are
not here either: each is a Secret of its own, mounted whole at LIKENESS_TLS_DIR (likeness.processVolumes).
*/}}
{{- define "likeness.secretFiles" -}}
{{- $v := .root.Values -}}
{{- $identity := include "likeness.identity" . -}}
{{- $credentials := index $v.credentials $identity -}}
{{- $own := printf "credentials.%s.existingSecret" $identity -}}
{{- $files := list -}}
{{- with $credentials.natsUser -}}
{{- $secret := required (printf "%s is required: it holds nats_password, the password of NATS user %q" $own .) $credentials.existingSecret -}}
{{- $files = append $files (dict "secret" $secret "key" "nats_password" "file" "nats_password") -}}
{{- end -}}
{{- if ne .service "gateway" -}}
{{- $secret := required (printf "%s is required: it holds s3_access_key and s3_secret_key, the S3 identity of %s" $own $identity) $credentials.existingSecret -}}
{{- range $file := list "s3_access_key" "s3_secret_key" -}}
{{- $files = append $files (dict "secret" $secret "key" $file "file" $file) -}}
{{- end -}}
{{- end -}}
{{- if has .service (list "ingest" "trainer" "renderer" "retention") -}}
{{- $files = append $files (dict "secret" $v.auditPseudonym.existingSecret "key" $v.auditPseudonym.existingSecretKey "file" "audit_pseudonym_secret") -}}
{{- end -}}
{{- if eq .service "gateway" -}}
{{- $idempotency := $v.gateway.idempotency -}}
{{- $files = append $files (dict "secret" $idempotency.existingSecret "key" $idempotency.existingSecretKey "file" "idempotency_secret") -}}
{{- else if eq .service "retention" -}}
{{- $files = append $files (dict "secret" $v.hmac.existingSecret "key" $v.hmac.existingSecretKey "file" "hmac_secret") -}}
{{- $receipts := $v.retention.receipts -}}
{{- $files = append $files (dict "secret" $receipts.existingSecret "key" $receipts.existingSecretKey "file" "receipt_signing_key") -}}
{{- else if eq .service "renderer" -}}
{{- $marking := $v.renderer.marking -}}
{{- $files = append $files (dict "secret" $marking.existingSecret "key" $marking.watermarkKeyKey "file" "watermark_key") -}}
{{- if and (eq (default "" .role) "work") $marking.c2paSign -}}
{{- $files = append $files (dict "secret" $marking.existingSecret "key" $marking.c2paCertChainKey "file" "c2pa_cert_chain") -}}
{{- $files = append $files (dict "secret" $marking.existingSecret "key" $marking.c2paPrivateKeyKey "file" "c2pa_private_key") -}}
{{- end -}}
{{- end -}}
{{- if include "likeness.verifiesTokens" . -}}
{{- with $v.auth.jwtDevSecretExistingSecret -}}
{{- $files = append $files (dict "secret" . "key" $v.auth.jwtDevSecretExistingSecretKey "file" "jwt_dev_secret") -}}
{{- end -}}
{{- end -}}
files: {{ toYaml $files | nindent 2 }}
{{- end -}}

{{/*
The process's own environment (besides the shared ConfigMap and what its Deployment adds for its kind):
where its secret files and its certificate are, its NATS user, its Vault role, how it verifies end users'
tokens, and the CA bundle. Values only, never a secretKeyRef: secrets are files (likeness.secretFiles).
*/}}
{{- define "likeness.processEnv" -}}
{{- $v := .root.Values -}}
{{- $identity := include "likeness.identity" . -}}
{{- $credentials := index $v.credentials $identity -}}
{{- if (fromYaml (include "likeness.secretFiles" .)).files }}
- name: LIKENESS_SECRETS_DIR
  value: {{ include "likeness.secretsDir" . | quote }}
{{- end }}
{{- if include "likeness.grpcHop" . }}
# Its certificate, key and CA for mutual TLS: renewed files are read again, without a restart.
- name: LIKENESS_TLS_DIR
  value: {{ include "likeness.tlsDir" . | quote }}
{{- end }}
{{- with $credentials.natsUser }}
- name: LIKENESS_NATS_USER
  value: {{ . | quote }}
{{- end }}
{{- if ne .service "bootstrap" }}
{{- if $v.auth.jwksExistingSecret }}
- name: LIKENESS_JWKS_FILE
  value: /etc/likeness/jwks/{{ $v.auth.jwksExistingSecretKey }}
{{- else }}
- name: LIKENESS_JWKS_URL
  value: {{ $v.auth.jwksUrl | quote }}
{{- end }}
- name: LIKENESS_JWT_ISSUER
  value: {{ $v.auth.issuer | quote }}
- name: LIKENESS_JWT_AUDIENCE
  value: {{ $v.auth.audience | quote }}
{{- end }}
{{- if include "likeness.usesVault" .service }}
- name: LIKENESS_VAULT_ROLE
  value: {{ include "likeness.vaultRole" . | quote }}
{{- end }}
{{- if eq .service "retention" }}
{{- with $v.retention.receipts.previousPublicKeys }}
- name: LIKENESS_RECEIPT_PREVIOUS_PUBLIC_KEYS
  value: {{ toJson . | quote }}
{{- end }}
{{- end }}
{{- if eq .service "renderer" }}
# Only the GPU workers mark outputs; the serve role holds no C2PA signing key.
- name: LIKENESS_C2PA_SIGN
  value: {{ and (eq (default "" .role) "work") $v.renderer.marking.c2paSign | quote }}
{{- $safety := $v.renderer.safety }}
{{- if and (eq (default "" .role) "work") (ne $safety.gate "off") }}
# The output safety gate: the pinned classifier (mounted read-only, likeness.processVolumes).
- name: LIKENESS_SAFETY_GATE
  value: {{ $safety.gate | quote }}
- name: LIKENESS_SAFETY_MODEL
  value: {{ $safety.mountPath | quote }}
{{- with $safety.manifestSha256 }}
- name: LIKENESS_SAFETY_MODEL_MANIFEST_SHA256
  value: {{ . | quote }}
{{- end }}
- name: LIKENESS_SAFETY_FLAGGED_LABELS
  value: {{ toJson $safety.flaggedLabels | quote }}
- name: LIKENESS_SAFETY_THRESHOLD
  value: {{ $safety.threshold | quote }}
{{- else }}
# The serve role classifies nothing (and the GPU workers' gate may be off).
- name: LIKENESS_SAFETY_GATE
  value: "off"
{{- end }}
{{- $adapter := $v.renderer.identityAdapter }}
{{- if $adapter.enabled }}
# Instant mode: the serve role only needs to know the adapter is there; the GPU workers verify and load it.
- name: LIKENESS_IDENTITY_ADAPTER
  value: {{ $adapter.mountPath | quote }}
{{- if eq (default "" .role) "work" }}
{{- with $adapter.manifestSha256 }}
- name: LIKENESS_IDENTITY_ADAPTER_MANIFEST_SHA256
  value: {{ . | quote }}
{{- end }}
- name: LIKENESS_IDENTITY_ADAPTER_SCALE
  value: {{ $adapter.scale | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if $v.tls.caBundle.existingConfigMap }}
# Every client library reads these: OpenSSL (NATS, urllib), requests (Vault), minio (S3); the OTLP exporter
# speaks gRPC, whose TLS ignores SSL_CERT_FILE and reads its roots from OTEL_EXPORTER_OTLP_CERTIFICATE.
- name: SSL_CERT_FILE
  value: /etc/likeness/ca/{{ $v.tls.caBundle.key }}
- name: REQUESTS_CA_BUNDLE
  value: /etc/likeness/ca/{{ $v.tls.caBundle.key }}
- name: OTEL_EXPORTER_OTLP_CERTIFICATE
  value: /etc/likeness/ca/{{ $v.tls.caBundle.key }}
{{- end }}
{{- end -}}

{{/*
The Vault role a process logs in as (LIKENESS_VAULT_ROLE): likeness-<identity>, one per identity as in
deploy/vault/roles (<service>.vaultRole for a serve role, <service>.work.vaultRole for GPU workers, when
set). Input: dict root, service, role.
*/}}
{{- define "likeness.vaultRole" -}}
{{- $own := index .root.Values .service -}}
{{- if eq (default "" .role) "work" }}{{ $own = $own.work }}{{ end -}}
{{- default (printf "likeness-%s" (include "likeness.identity" .)) $own.vaultRole -}}
{{- end -}}

{{/*
A process's volumes (part "volumes") or its container's mounts of them (part "mounts"): each volume and its
mount are written side by side below, so the two lists cannot drift apart. Every mount is read-only but the
GPU workers' memory-backed /tmp.
  secrets     the process's secret files (likeness.secretFiles), one projected volume, files 0400 (the pod's
              fsGroup makes them group-readable by the process's gid 10001), at LIKENESS_SECRETS_DIR
  tls         its certificate's Secret (tls.crt, tls.key, ca.crt), mounted whole at LIKENESS_TLS_DIR: never
              with subPath, whose files the kubelet never updates, so a renewed certificate arrives (every
              process with a gRPC hop)
  vault-token a short-lived, Vault-audience service account token (every service but the gateway)
  jwks        the identity provider's keys as a file (with auth.jwksExistingSecret; not the bootstrap Job)
  ca-bundle   the CAs to trust (tls.caBundle.existingConfigMap)
  scratch     /tmp in memory, and base-model, the weights read-only (GPU workers)
Input: dict root, service, role, part.
*/}}
{{- define "likeness.processVolumes" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := index $v .service -}}
{{- $pod := ternary (index $svc (default "" .role)) $svc (not (empty .role)) -}}
{{- $volumes := eq .part "volumes" -}}
{{- $context := dict "root" $root "service" .service "role" .role -}}
{{- $worker := eq (default "" .role) "work" -}}
{{- $files := (fromYaml (include "likeness.secretFiles" .)).files -}}
{{- $jwksSecret := and (ne .service "bootstrap") $v.auth.jwksExistingSecret -}}
{{- $caBundle := $v.tls.caBundle -}}
{{- if $files }}
{{- if $volumes }}
- name: secrets
  projected:
    defaultMode: 0400
    sources:
      {{- $names := list }}
      {{- range $files }}{{ $names = append $names .secret }}{{ end }}
      {{- range $name := uniq $names }}
      - secret:
          name: {{ $name | quote }}
          items:
            {{- range $files }}
            {{- if eq .secret $name }}
            - key: {{ .key | quote }}
              path: {{ .file }}
            {{- end }}
            {{- end }}
      {{- end }}
{{- else }}
- name: secrets
  mountPath: {{ include "likeness.secretsDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- if include "likeness.grpcHop" . }}
{{- if $volumes }}
- name: tls
  secret:
    secretName: {{ include "likeness.tlsSecretName" $context | quote }}
    defaultMode: 0400
    items:
      {{- range $key := list "tls.crt" "tls.key" "ca.crt" }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- else }}
- name: tls
  mountPath: {{ include "likeness.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- if include "likeness.usesVault" .service }}
{{- if $volumes }}
{{ include "likeness.vaultTokenVolume" $root }}
{{- else }}
{{ include "likeness.vaultTokenMount" . }}
{{- end }}
{{- end }}
{{- if $jwksSecret }}
{{- if $volumes }}
- name: jwks
  secret:
    secretName: {{ $jwksSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.auth.jwksExistingSecretKey }}
        path: {{ $v.auth.jwksExistingSecretKey }}
{{- else }}
- name: jwks
  mountPath: /etc/likeness/jwks
  readOnly: true
{{- end }}
{{- end }}
{{- if $caBundle.existingConfigMap }}
{{- if $volumes }}
- name: ca-bundle
  configMap:
    name: {{ $caBundle.existingConfigMap }}
    defaultMode: 0444
    items:
      - key: {{ $caBundle.key }}
        path: {{ $caBundle.key }}
{{- else }}
- name: ca-bundle
  mountPath: /etc/likeness/ca
  readOnly: true
{{- end }}
{{- end }}
{{- if $worker }}
{{- if $volumes }}
- name: scratch
  emptyDir:
    medium: Memory
    sizeLimit: {{ $pod.scratch.sizeLimit }}
- name: base-model
  persistentVolumeClaim:
    claimName: {{ $v.baseModel.existingClaim }}
    readOnly: true
{{- if and (eq .service "renderer") (ne $v.renderer.safety.gate "off") $v.renderer.safety.existingClaim }}
- name: safety-model
  persistentVolumeClaim:
    claimName: {{ $v.renderer.safety.existingClaim }}
    readOnly: true
{{- end }}
{{- if and (eq .service "renderer") $v.renderer.identityAdapter.enabled $v.renderer.identityAdapter.existingClaim }}
- name: identity-adapter
  persistentVolumeClaim:
    claimName: {{ $v.renderer.identityAdapter.existingClaim }}
    readOnly: true
{{- end }}
{{- else }}
# The only writable path: RAM, so no plaintext ever reaches a disk.
- name: scratch
  mountPath: /tmp
- name: base-model
  mountPath: {{ $v.baseModel.mountPath }}
  {{- with $v.baseModel.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- if and (eq .service "renderer") (ne $v.renderer.safety.gate "off") }}
# The safety classifier: from its own claim, or from the base model's (then the same volume, another path).
- name: {{ ternary "safety-model" "base-model" (not (empty $v.renderer.safety.existingClaim)) }}
  mountPath: {{ $v.renderer.safety.mountPath }}
  {{- with $v.renderer.safety.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- if and (eq .service "renderer") $v.renderer.identityAdapter.enabled }}
# Instant mode's identity adapter: from its own claim, or from the base model's (another path there).
- name: {{ ternary "identity-adapter" "base-model" (not (empty $v.renderer.identityAdapter.existingClaim)) }}
  mountPath: {{ $v.renderer.identityAdapter.mountPath }}
  {{- with $v.renderer.identityAdapter.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
