# likeness-trainer: the trainer's `serve` role (the gRPC API over training records) opens trained models for
# a data export, and nothing else: ExportModels decrypts each succeeded training's LoRA and the face
# templates sealed beside it, to stream them to the gateway (the person's GDPR export). It seals nothing.
#
# What the code calls (libs/likeness/likeness/vault_transit.py through sealed.py, trainer/export.py):
#   SubjectKeys.unwrap    POST transit/decrypt/likeness-subject-<id>             (ExportModels)
# No data keys (it seals nothing), no create, read, list, rotate or delete of keys, no encrypt, no export.
# Its S3 identity reads only LoRAs and models' face templates (likeness.provisioning), so this right opens
# nothing else of a person's. The GPU worker's rights are in trainer-worker.hcl.

path "transit/decrypt/likeness-subject-*" {
  capabilities = ["update"]
}
