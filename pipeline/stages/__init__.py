"""One module per pipeline stage: train, compress, export, validate, profile, gate."""
