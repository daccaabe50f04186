"""Release rules: versions, release candidates, approvals, readiness, hotfixes, rollbacks and release notes."""
