"""Persona creation: scrape, filter, dataset, fine-tune, evaluate, export (no Qt)."""
