"""Git and GitOps: a cached mirror of a remote, the environments' chart versions in it, and what its log tells."""
