# likeness-retention: the only service that creates, reads, lists and destroys subject keys.
#
# What the code calls (libs/likeness/likeness/vault_transit.py, services/retention/retention/vault_keys.py):
#   SubjectKeys.create     POST   transit/keys/likeness-subject-<id>          (type, exportable, allow_plaintext_backup)
#                          POST   transit/keys/likeness-subject-<id>/config   (deletion_allowed)
#   SubjectKeys.exists     GET    transit/keys/likeness-subject-<id>
#   RetentionKeys.created_at GET  transit/keys/likeness-subject-<id>
#   SubjectKeys.destroy    POST   .../config (deletion_allowed), DELETE transit/keys/likeness-subject-<id>
#   RetentionKeys.subject_ids LIST transit/keys                               (orphan-key sweep)
# Retention never encrypts, decrypts or asks for data keys: it cannot read anyone's data.
# Erasure receipts are signed with an Ed25519 key from LIKENESS_RECEIPT_SIGNING_KEY, not with Vault.

# Create, read and delete subject keys. A `*` glob also matches the keys' sub-paths (config, rotate, trim),
# so the parameters are pinned: a key can only be created as a non-exportable aes256-gcm96 key without a
# plaintext backup, and its configuration can only allow deletion (never make it exportable). `trim`,
# `rotate` with parameters, `min_decryption_version` and the like are refused.
path "transit/keys/likeness-subject-*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "type"                   = ["aes256-gcm96"]
    "exportable"             = [false]
    "allow_plaintext_backup" = [false]
    "deletion_allowed"       = [true]
  }
}

# The orphan sweep lists the mount's keys (only names, no key material).
path "transit/keys" {
  capabilities = ["list"]
}
