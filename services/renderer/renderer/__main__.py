"""`python -m renderer [serve|work]`: the gRPC API (the default) or the GPU worker."""

from likeness.runtime import run_role
from renderer.server import serve, work

if __name__ == "__main__":
    run_role("renderer", {"serve": serve, "work": work})
