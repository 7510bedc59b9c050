"""report.md, its sections and its plots."""
