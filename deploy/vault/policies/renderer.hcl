# likeness-renderer: opens the subject's LoRA and face templates (work) and stored images (serve:
# FetchImage streams them to the gateway), and seals every image it renders (work).
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, renderer/worker.py, service.py):
#   SubjectKeys.data_key  POST transit/datakey/plaintext/likeness-subject-<id>   (rendered images)
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (LoRA, templates, images)
# No create, read, list, rotate or delete of keys; no encrypt, no wrapped-only data keys, no export.

path "transit/datakey/plaintext/likeness-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
