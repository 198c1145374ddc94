"""`python -m trainer [serve|work]`: the gRPC API (the default) or the GPU worker."""

from likeness.runtime import run_role
from trainer.server import serve, work

if __name__ == "__main__":
    run_role("trainer", {"serve": serve, "work": work})
