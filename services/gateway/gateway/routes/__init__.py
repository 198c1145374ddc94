"""The v1 REST routes, one module per resource; each stays thin (checks in `access`, shapes in `convert`)."""
