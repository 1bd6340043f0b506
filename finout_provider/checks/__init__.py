"""What is judged of a cluster: preflight, completeness, coverage and status (what the CLI and the page show)."""
