"""Training code for the models (run on CPU or GPU; see each module)."""
