# likeness-trainer: opens the subject's photos (and its own checkpoints when resuming) and seals the LoRA
# and checkpoints it produces. Both roles (serve, work) share one service account; only `work` uses these.
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, trainer/worker.py):
#   SubjectKeys.data_key  POST transit/datakey/plaintext/likeness-subject-<id>   (LoRA, checkpoints)
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (photos, checkpoints)
# No create, read, list, rotate or delete of keys; no encrypt, no wrapped-only data keys, no export.

path "transit/datakey/plaintext/likeness-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
