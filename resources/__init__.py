"""Bundled data: catalogue, built-in personas, icons."""
