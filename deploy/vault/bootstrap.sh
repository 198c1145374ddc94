#!/usr/bin/env bash
# Prepares a Vault (or OpenBao) server for Likeness: the Transit engine, Kubernetes auth, one least-privilege
# policy and one Kubernetes-auth role per process identity. Idempotent: run it again after changing a policy.
#
# Identities (one per process kind; a job service's `serve` and `work` roles are two identities, with two
# service accounts, because the API holds far fewer Vault rights than its GPU worker):
#   retention, ingest, trainer (serve), trainer-worker, renderer (serve), renderer-worker
# each gets policy likeness-<identity> (policies/<identity>.hcl) and role likeness-<identity>
# (roles/<identity>.json), bound to service account <prefix>-<identity> in one namespace.
#
#   VAULT_ADDR=https://vault.example:8200 VAULT_TOKEN=<admin token> \
#   LIKENESS_NAMESPACE=likeness LIKENESS_SERVICE_ACCOUNT_PREFIX=likeness deploy/vault/bootstrap.sh
#
# Settings (environment):
#   VAULT_CLI                         the CLI to use (default: `vault`, else `bao`); BAO_ADDR/BAO_TOKEN are
#                                     set from VAULT_ADDR/VAULT_TOKEN when missing, so either CLI works
#   LIKENESS_NAMESPACE                namespace of the release's service accounts (default: likeness)
#   LIKENESS_SERVICE_ACCOUNT_PREFIX   the chart's "<release>-<chart>" fullname: service accounts are named
#                                     <prefix>-<identity> (default: likeness, i.e. release "likeness")
#   LIKENESS_TOKEN_AUDIENCE           audience of the pods' projected tokens, the chart's vault.tokenAudience
#                                     (default: vault)
#   LIKENESS_TRANSIT_MOUNT            Transit mount, the chart's vault.transitMount (default: transit)
#   LIKENESS_KUBERNETES_AUTH_MOUNT    Kubernetes auth mount (default: kubernetes)
#   KUBERNETES_HOST                   API server Vault sends TokenReviews to (default: in-cluster address)
#   KUBERNETES_CA_CERT                file with the API server's CA bundle (optional; in-cluster Vault reads
#                                     its own)
#   VAULT_OUTSIDE_CLUSTER=1           Vault runs outside the cluster: do not look for the pod's own CA and
#                                     token (disable_local_ca_jwt); give KUBERNETES_CA_CERT and
#                                     TOKEN_REVIEWER_JWT (file) of a service account allowed to do TokenReviews
#   SKIP_KUBERNETES_AUTH_CONFIG=1     leave an existing auth/<mount>/config alone (a platform team's)
#   DRY_RUN=1                         print the commands instead of running them
#
# The gateway gets no role and no policy: it holds no Vault right at all.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
IDENTITIES=(retention ingest trainer trainer-worker renderer renderer-worker)

CLI="${VAULT_CLI:-$(command -v vault || command -v bao || true)}"
if [[ -z "$CLI" ]]; then
  echo "bootstrap.sh: neither vault nor bao is on PATH (set VAULT_CLI)" >&2
  exit 2
fi
if [[ -n "${VAULT_ADDR:-}" ]]; then export BAO_ADDR="${BAO_ADDR:-$VAULT_ADDR}"; fi
if [[ -n "${VAULT_TOKEN:-}" ]]; then export BAO_TOKEN="${BAO_TOKEN:-$VAULT_TOKEN}"; fi

NAMESPACE="${LIKENESS_NAMESPACE:-likeness}"
SA_PREFIX="${LIKENESS_SERVICE_ACCOUNT_PREFIX:-likeness}"
AUDIENCE="${LIKENESS_TOKEN_AUDIENCE:-vault}"
TRANSIT="${LIKENESS_TRANSIT_MOUNT:-transit}"
AUTH="${LIKENESS_KUBERNETES_AUTH_MOUNT:-kubernetes}"
KUBE_HOST="${KUBERNETES_HOST:-https://kubernetes.default.svc}"

run() {
  if [[ "${DRY_RUN:-}" == "1" ]]; then
    echo "+ $CLI $*"
  else
    "$CLI" "$@"
  fi
}

# run_with_stdin TEXT ARGS...: the CLI reads a policy or a JSON body from standard input ("-").
run_with_stdin() {
  local body="$1"
  shift
  if [[ "${DRY_RUN:-}" == "1" ]]; then
    echo "+ $CLI $* <<'EOF'"
    echo "$body"
    echo "EOF"
  else
    printf '%s\n' "$body" | "$CLI" "$@"
  fi
}

mounted() { # mounted secrets|auth PATH
  [[ "${DRY_RUN:-}" == "1" ]] && return 1
  local listed
  listed="$("$CLI" "$1" list -format=json)" # not piped into grep -q: pipefail would see the CLI's SIGPIPE
  [[ "$listed" == *"\"$2/\""* ]]
}

# 1. Transit: one key per subject (retention creates them on open and destroys them on erasure).
if mounted secrets "$TRANSIT"; then
  echo "transit already mounted at $TRANSIT/"
else
  run secrets enable -path="$TRANSIT" transit
fi

# 2. Kubernetes auth: each pod logs in with its projected service account token (audience $AUDIENCE).
if mounted auth "$AUTH"; then
  echo "kubernetes auth already enabled at auth/$AUTH/"
else
  run auth enable -path="$AUTH" kubernetes
fi
if [[ "${SKIP_KUBERNETES_AUTH_CONFIG:-}" != "1" ]]; then
  config=(write "auth/$AUTH/config" "kubernetes_host=$KUBE_HOST")
  if [[ -n "${KUBERNETES_CA_CERT:-}" ]]; then config+=("kubernetes_ca_cert=@$KUBERNETES_CA_CERT"); fi
  if [[ -n "${TOKEN_REVIEWER_JWT:-}" ]]; then config+=("token_reviewer_jwt=@$TOKEN_REVIEWER_JWT"); fi
  if [[ "${VAULT_OUTSIDE_CLUSTER:-}" == "1" ]]; then config+=("disable_local_ca_jwt=true"); fi
  run "${config[@]}"
fi

# 3. Policies: likeness-<identity>, with the Transit mount path substituted.
for identity in "${IDENTITIES[@]}"; do
  policy="$(sed "s#\"transit/#\"$TRANSIT/#; s#\"transit\"#\"$TRANSIT\"#" "$HERE/policies/$identity.hcl")"
  run_with_stdin "$policy" policy write "likeness-$identity" -
done

# 4. Roles: likeness-<identity>, bound to one service account in one namespace, short-lived tokens carrying
#    only that identity's policy (no default policy).
for identity in "${IDENTITIES[@]}"; do
  role="$(sed -e "s#\${SERVICE_ACCOUNT_PREFIX}#$SA_PREFIX#g" -e "s#\${NAMESPACE}#$NAMESPACE#g" \
    -e "s#\${AUDIENCE}#$AUDIENCE#g" "$HERE/roles/$identity.json")"
  run_with_stdin "$role" write "auth/$AUTH/role/likeness-$identity" -
done

echo "Vault is ready for Likeness: policies and roles likeness-{$(IFS=,; echo "${IDENTITIES[*]}")}"
