"""Monitoring as code: Grafana dashboards and Prometheus rules generated from configs/monitoring.yaml,
a local Prometheus for running without Docker, and a traffic replay that brings the dashboards to life."""
