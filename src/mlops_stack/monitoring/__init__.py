"""Monitoring of the served model: drift, data quality and model quality of logged predictions."""
