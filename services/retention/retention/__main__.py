"""`python -m retention [serve]`: the gRPC API, the reaper and the orphan sweeps."""

from likeness.runtime import run_role
from retention.server import serve

if __name__ == "__main__":
    run_role("retention", {"serve": serve})
