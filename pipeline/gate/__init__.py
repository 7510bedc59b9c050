"""Budgets and the gate that applies them."""
