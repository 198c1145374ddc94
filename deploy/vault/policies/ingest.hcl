# likeness-ingest: seals each accepted crop and face template under its subject's key, opens the
# subject's earlier templates (duplicate and same-person checks need them in clear, in memory only), and
# opens the crops ExportPhotos streams back to the gateway.
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py):
#   SubjectKeys.data_key  POST transit/datakey/plaintext/likeness-subject-<id>   (one per stored object)
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (batch_input: templates; crops)
# No create, read, list, rotate or delete of keys; no encrypt, no wrapped-only data keys, no export.

path "transit/datakey/plaintext/likeness-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
