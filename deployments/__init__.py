"""Registering promo on a Prefect server: deploy.py (used by `promo setup`)."""
