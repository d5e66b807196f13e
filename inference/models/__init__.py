"""Model definitions, weight loading (sha256-checked) and device choice."""
