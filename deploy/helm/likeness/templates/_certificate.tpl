{{/*
The cert-manager Certificate of one process with a gRPC hop (tls.certManager.enabled): its certificate for
mutual TLS, written into the Secret "<fullname>-<identity>-tls" that its pods mount whole at
LIKENESS_TLS_DIR (likeness.processVolumes). What it carries follows libs/likeness/likeness/grpc_tls.py and
the dev stack's CA (devkit/likeness_dev/dev_pki.py):
  uris       spiffe://likeness/<identity>, the identity a server reads from its caller's certificate and
             authorizes per method (likeness.grpc_callers); exactly one per certificate
  dnsNames   <identity>, the name the gateway checks a server against whatever address it dialled (gRPC
             Python matches DNS names only), then the names of the process's Service, for other clients
             (grpcurl); the gateway serves no TLS and gets its identity only
  usages     server auth and client auth (every hop is mutual), digital signature (ECDSA)
  privateKey ECDSA P-256 in PKCS#8, a new key at every renewal (rotationPolicy Always)
  duration   short (tls.certManager.duration) and renewed well before it ends (renewBefore): processes read
             renewed files without a restart
Renders nothing without cert-manager or for a process that is not deployed. Input: dict root, service,
role.
*/}}
{{- define "likeness.certificate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $certManager := $v.tls.certManager -}}
{{- $identity := include "likeness.identity" . -}}
{{- $w := fromYaml (include "likeness.workload" .) -}}
{{- if and $certManager.enabled (include "likeness.grpcHop" .) }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ include "likeness.componentName" (dict "root" $root "component" $identity) }}
  {{- include "likeness.namespace" $root | nindent 2 }}
  labels:
    {{- include "likeness.labels" (dict "root" $root "component" $w.component) | nindent 4 }}
spec:
  secretName: {{ include "likeness.tlsSecretName" . }}
  # The Secret is cert-manager's, not Helm's: it carries the release's selector labels only.
  secretTemplate:
    labels:
      {{- include "likeness.selectorLabels" (dict "root" $root "component" $w.component) | nindent 6 }}
      app.kubernetes.io/part-of: likeness
  issuerRef:
    name: {{ $certManager.issuerRef.name }}
    kind: {{ $certManager.issuerRef.kind }}
    group: {{ $certManager.issuerRef.group }}
  duration: {{ $certManager.duration }}
  renewBefore: {{ $certManager.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    encoding: PKCS8
    rotationPolicy: Always
  usages:
    - server auth
    - client auth
    - digital signature
  uris:
    - {{ printf "spiffe://likeness/%s" $identity }}
  dnsNames:
    - {{ $identity }}
    {{- if eq $w.kind "grpc" }}
    {{- $service := include "likeness.componentName" (dict "root" $root "component" .service) }}
    {{- $namespace := $root.Release.Namespace }}
    - {{ $service }}
    - {{ printf "%s.%s" $service $namespace }}
    - {{ printf "%s.%s.svc" $service $namespace }}
    - {{ printf "%s.%s.svc.%s" $service $namespace $certManager.clusterDomain }}
    {{- end }}
{{- end }}
{{- end -}}
