"""`python -m ingest [serve]`: the gRPC API."""

from ingest.server import serve
from likeness.runtime import run_role

if __name__ == "__main__":
    run_role("ingest", {"serve": serve})
