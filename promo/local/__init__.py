"""The local world: a Prefect server, a registry, the Argo CD stand-in and the sandbox, each a process promo owns."""
