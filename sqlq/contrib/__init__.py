"""Integrations with web frameworks (Django); each imports its framework only when it is used, so
``import sqlq`` never does."""
