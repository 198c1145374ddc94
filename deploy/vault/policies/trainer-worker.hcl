# likeness-trainer-worker: the trainer's `work` role (the GPU worker on the job.train queue) opens the
# subject's photos (and its own checkpoints when resuming) and seals the LoRA and checkpoints it produces.
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, trainer/worker.py,
# trainer/checkpoint_writer.py):
#   SubjectKeys.data_key  POST transit/datakey/plaintext/likeness-subject-<id>   (LoRA, checkpoints; and the
#                                                                                 liveness probe of a job's key)
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (photos, checkpoints)
# No create, read, list, rotate or delete of keys; no encrypt, no wrapped-only data keys, no export.

path "transit/datakey/plaintext/likeness-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
