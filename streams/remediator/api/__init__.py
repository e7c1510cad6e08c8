"""The Remediations REST API, served by every worker (README "The REST API")."""
