"""`python -m gateway [serve]`: the REST API."""

from gateway.server import serve
from likeness.runtime import run_role

if __name__ == "__main__":
    run_role("gateway", {"serve": serve})
