"""Procedural training and evaluation tasks (see generators.py for the families)."""
