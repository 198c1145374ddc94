# likeness-renderer: the renderer's `serve` role (the gRPC API over render records) opens stored images:
# FetchImage streams a rendered image to the gateway. It renders and seals nothing (the worker does).
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, renderer/service.py):
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (FetchImage)
# No data keys (it seals nothing), no create, read, list, rotate or delete of keys, no encrypt, no export.
# The worker's rights are in renderer-worker.hcl.

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
