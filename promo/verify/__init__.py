"""Verification: did the version one GitOps commit deployed come up, synced and healthy, on every cluster?

``argocd`` asks Argo CD about each cluster's Application, ``http`` asks the app itself which chart version it serves,
``engine`` polls both until every cluster is done, fails or runs out of time, and returns a ``promo.gitops.verdicts.Verdict``.
"""
