"""The implementations of ``promo.forge.Forge``: ``local`` (git refs only) and ``github`` (the REST API)."""
