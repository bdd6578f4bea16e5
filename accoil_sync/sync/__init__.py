"""Planner, delivery engine, state store, sync log and the run that ties them together."""
