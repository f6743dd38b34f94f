"""HTTP endpoints, one module per concept."""
