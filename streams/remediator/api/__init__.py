"""The Remediations REST API (CONTRACT.md §4), served by every worker."""
