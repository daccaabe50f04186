"""Read-only reports for `promo status`, `trace` and `metrics`: they never import Prefect."""
