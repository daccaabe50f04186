"""Integration tests: promo on a real Prefect server, and the docker/ files."""
