"""HTTP layer: one blueprint per resource."""
