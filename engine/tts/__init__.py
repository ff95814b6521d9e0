"""Text to speech: ``synthesize(text, voice) -> Iterator[AudioChunk]``, plus text preparation."""
