"""The app's dialogs: models and personas, voices, settings."""
