"""Registry and charts: the OCI distribution API, Helm charts stored in it, and the image builds pushed to it."""
