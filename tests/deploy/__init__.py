"""Deployment tests: bodywork.yaml as Bodywork reads and runs it, the CronJob, the CI config."""
