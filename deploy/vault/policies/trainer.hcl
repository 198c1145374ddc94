# likeness-trainer: the trainer's `serve` role (the gRPC API over training records) holds no Vault right.
#
# It accepts trainings onto the work queue and reports on them from its KV records; it never opens or seals
# a subject's data (trainer/service.py makes no Transit call). It still logs in at start-up (the shared
# runtime connects to Vault in every role), so it has a role, and that role's token can do nothing:
# every Transit path is refused. The GPU worker's rights are in trainer-worker.hcl.
