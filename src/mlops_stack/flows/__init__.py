"""Prefect flows: the only place where the lifecycle's steps are put together."""
