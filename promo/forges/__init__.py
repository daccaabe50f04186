"""The implementations of ``promo.forges.base.Forge``: ``local`` (git refs only) and ``github`` (the REST API)."""
