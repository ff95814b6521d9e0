"""The voice turn: microphone → speech to text → chat → sentences → cloned voice → speaker."""
