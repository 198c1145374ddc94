# likeness-renderer-worker: the renderer's `work` role (the GPU worker on the job.render queue) opens the
# subject's LoRA and face templates (or, for an instant render, one accepted photo) and seals every image
# it renders.
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, renderer/worker.py):
#   SubjectKeys.data_key  POST transit/datakey/plaintext/likeness-subject-<id>   (rendered images)
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (LoRA, face templates, an instant render's photo)
# No create, read, list, rotate or delete of keys; no encrypt, no wrapped-only data keys, no export.

path "transit/datakey/plaintext/likeness-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
