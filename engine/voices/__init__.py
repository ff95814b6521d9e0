"""Voices: enrolment, quality checks, the speaker encoder, storage."""
